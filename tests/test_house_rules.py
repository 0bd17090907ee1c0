"""House rules that import-linter and mypy cannot see (README "Architecture"), checked on the source."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "bee_customers_service"
MAX_MODULE_LINES = 400

# Who may commit. A request commits once, in core/db.py's get_session; everything else listed here
# runs flows that need several transactions and opens its sessions from a sessionmaker itself.
COMMITTERS = {
    "core/db.py": "the request's one commit point",
    "avatars/service.py": "upload and removal: the new URL, then each object clean-up under a fresh lock",
    "gdpr/service.py": "erasure, then the stored objects' clean-up; one transaction per retried record",
    "activity/service.py": "recompute_business: one transaction per chunk of customers",
    "activity/segments.py": "refresh_business: one transaction per chunk of customers' stored segments",
    "activity/consumer.py": "one transaction per batch of messages, acknowledged after it",
    "identity/consumer.py": "one transaction per auth event; a deletion: gdpr's erasure, then the claim",
}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def test_no_module_is_over_400_lines():
    long = {_name(p): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}, f"split these by job (at most {MAX_MODULE_LINES} lines): {long}"


def _commits(path: Path) -> list[int]:
    tree = ast.parse(path.read_text())
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "commit"
    ]


def test_only_the_session_dependency_and_multi_transaction_flows_commit():
    committing = {_name(p): lines for p in _modules() if (lines := _commits(p)) and _name(p) not in COMMITTERS}
    assert committing == {}, "services flush; the request's session dependency commits (README 'Architecture')"


def test_the_committers_listed_still_commit():
    stale = [name for name in COMMITTERS if not _commits(PACKAGE / name)]
    assert stale == [], "remove these from COMMITTERS"
