"""`python -m bee_customers_service.asyncapi --write docs/asyncapi.yaml` (see document.py)."""

import sys

from bee_customers_service.asyncapi.document import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
