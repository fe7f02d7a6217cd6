-- One GraphQL operation of the contract per request, as its client sends it.
--
-- wrk ... -s bench/wrk/graphql.lua URL -- SCENARIO QUERY_FILE TOKENS_FILE TAG ACCOUNTS
--   SCENARIO     dashboard | store | claim | claim-hot | purchase | postgraphile
--   QUERY_FILE   the operation's document as a JSON string literal (the harness writes it)
--   TOKENS_FILE  one bearer token per line; each request picks one at random (postgraphile:
--                one external id per line, sent as the $externalId variable, no token: the
--                Dashboard of a random account in PostGraphile's schema)
--   TAG          prefix of the fresh eventIds / idempotency keys of this run
--   ACCOUNTS     accounts u1..uN exist (RecordPurchase picks a random one)
--
-- An answer counts as an error unless it is HTTP 200 without "errors" in its body (GraphQL
-- answers errors with 200). In the claim-hot scenario INSUFFICIENT_BALANCE is the expected
-- answer once the account is spent: it is counted apart, as `rejected`, not as an error.
-- done() prints one line: BENCH_RESULT {json}.

local threads = {}

function setup(thread)
  thread:set("thread_no", #threads + 1)
  table.insert(threads, thread)
end

local function read_all(path)
  local file = assert(io.open(path, "r"))
  local text = file:read("*a")
  file:close()
  return text
end

local operations = {
  dashboard = "Dashboard",
  store = "RewardStore",
  claim = "ClaimReward",
  ["claim-hot"] = "ClaimReward",
  purchase = "RecordPurchase",
  postgraphile = "Dashboard",
}
local products = { "acme-res", "globex-res", "initech-res", "acme-dc", "globex-dc", "initech-dc" }

function init(args)
  scenario = args[1]
  query = read_all(args[2]):gsub("%s+$", "")
  tokens = {}
  for line in io.lines(args[3]) do
    if #line > 0 then
      tokens[#tokens + 1] = line
    end
  end
  tag = args[4]
  accounts = tonumber(args[5])
  operation = assert(operations[scenario], "unknown scenario " .. tostring(scenario))
  counter = 0
  errors, rejected, locked, internal, non200 = 0, 0, 0, 0, 0
  sample = ""
  math.randomseed(os.time() * 1000 + thread_no)
end

function request()
  counter = counter + 1
  local id = tag .. "-" .. thread_no .. "-" .. counter
  local variables = "{}"
  if scenario == "claim" or scenario == "claim-hot" then
    variables = string.format('{"input":{"providerId":"prv_%d","idempotencyKey":"%s"}}', math.random(1, 3), id)
  elseif scenario == "purchase" then
    variables = string.format(
      '{"input":{"eventId":"%s","externalId":"u%d","productKey":"%s","quantityGb":"%d"}}',
      id, math.random(1, accounts), products[math.random(1, #products)], math.random(1, 50))
  end
  local headers = { ["Content-Type"] = "application/json" }
  if scenario == "postgraphile" then
    variables = '{"externalId":"' .. tokens[math.random(1, #tokens)] .. '"}'
  else
    headers["Authorization"] = "Bearer " .. tokens[math.random(1, #tokens)]
  end
  local body = '{"operationName":"' .. operation .. '","query":' .. query .. ',"variables":' .. variables .. '}'
  return wrk.format("POST", "/graphql", headers, body)
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
    errors = errors + 1
  elseif body:find('"errors"', 1, true) then
    if body:find("database is locked", 1, true) then
      locked = locked + 1
    end
    if body:find('"INTERNAL"', 1, true) then
      internal = internal + 1
    end
    if scenario == "claim-hot" and body:find('"INSUFFICIENT_BALANCE"', 1, true) then
      rejected = rejected + 1
      return
    end
    errors = errors + 1
  else
    return
  end
  if sample == "" then
    sample = tostring(status) .. " " .. body:sub(1, 300)
  end
end

function done(summary, latency, requests)
  local totals = { errors = 0, rejected = 0, locked = 0, internal = 0, non200 = 0 }
  local first_sample = ""
  for _, thread in ipairs(threads) do
    for name, _ in pairs(totals) do
      totals[name] = totals[name] + (thread:get(name) or 0)
    end
    local s = thread:get("sample")
    if first_sample == "" and s then
      first_sample = s
    end
  end
  local e = summary.errors
  local socket = e.connect + e.read + e.write + e.timeout
  local seconds = summary.duration / 1e6
  first_sample = first_sample:gsub('\\', '\\\\'):gsub('"', '\\"'):gsub('%c', ' ')
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%.0f,"rps":%.1f,"p50_us":%.0f,"p90_us":%.0f,' ..
    '"p99_us":%.0f,"max_us":%.0f,"errors":%d,"rejected":%d,"locked":%d,"internal":%d,' ..
    '"non200":%d,"socket_errors":%d,"sample":"%s"}\n',
    summary.requests, summary.duration, summary.requests / seconds,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    totals.errors + socket, totals.rejected, totals.locked, totals.internal, totals.non200, socket,
    first_sample))
end
