-- One wrk script for every endpoint: ENDPOINT picks the request shape.
-- Env: BENCH_LUA_DIR (this folder), BENCH_DIR (ids.txt, token files, business.txt), ENDPOINT.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")

local dir = os.getenv("BENCH_DIR")
local endpoint = os.getenv("ENDPOINT")
local ids, token, service_token, business, first_names, last_names
local counter = 0

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  ids = common.read_lines(dir .. "/ids.txt")
  token = common.read_lines(dir .. "/token.txt")[1]
  service_token = common.read_lines(dir .. "/service_token.txt")[1]
  business = common.read_lines(dir .. "/business.txt")[1]
  if endpoint == "patch" then
    -- a PATCH renames the customer to a real name: the seeder's lists, as bench/api.py's pgbench script
    first_names = common.read_lines(dir .. "/first_names.txt")
    last_names = common.read_lines(dir .. "/last_names.txt")
  end
end

local queries = {"ana", "popescu", "ion", "maria", "stefan", "gheorghe", "elena", "andrei"}

function request()
  counter = counter + 1
  local id = ids[math.random(1, #ids)]
  local auth = {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}
  if endpoint == "get" then
    return wrk.format("GET", "/customers/" .. id, auth)
  elseif endpoint == "patch" then
    local body = string.format('{"full_name": "%s %s"}',
      first_names[math.random(1, #first_names)], last_names[math.random(1, #last_names)])
    return wrk.format("PATCH", "/customers/" .. id, auth, body)
  elseif endpoint == "post" then
    local service = {["Authorization"] = "Bearer " .. service_token, ["Content-Type"] = "application/json"}
    -- one email per business (migration 0013): every profile gets its own, or all but the first are 409s
    local user = common.uuid4()
    local body = string.format(
      '{"user_id": "%s", "business_id": "%s", "full_name": "Bench Customer", "email": "bench-%s@example.com", "phone": "+40712345678"}',
      user, business, user)
    return wrk.format("POST", "/customers", service, body)
  elseif endpoint == "tag" then
    local body = string.format('{"label": "bench-%s"}', common.uuid4():sub(1, 12))
    return wrk.format("POST", "/customers/" .. id .. "/tags", auth, body)
  elseif endpoint == "search" then
    local q = queries[math.random(1, #queries)]
    return wrk.format("GET", "/customers?business_id=" .. business .. "&query=" .. q .. "&limit=20", auth)
  end
end

function done(summary, latency, requests)
  common.report(summary, latency)
end
