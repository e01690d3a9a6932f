-- wrk's side of the soak: GET /api/items/{n} and POST /api/items (a JSON body the
-- spec's schema accepts), one after the other on each connection. Answers are
-- counted per kind (the upstream's X-Kind header: the request's method) and status;
-- done() prints one "SOAK <kind> <status> <count>" line per pair (kind "?" when the
-- answer did not come from the upstream: an error the gateway wrote itself).

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  counts = {}
  sent = {GET = 0, POST = 0}
  n = 0
  local body = '{"name": "soak item", "tags": ["a", "b", "c"], "price": 12.5, '
    .. '"note": "' .. string.rep("n", 800) .. '"}'
  post = wrk.format("POST", "/api/items", {["Content-Type"] = "application/json"}, body)
end

function request()
  n = n + 1
  if n % 2 == 0 then
    sent.POST = sent.POST + 1
    return post
  end
  sent.GET = sent.GET + 1
  return wrk.format("GET", "/api/items/" .. (n % 1000))
end

function response(status, headers, body)
  local key = (headers["X-Kind"] or headers["x-kind"] or "?") .. " " .. status
  counts[key] = (counts[key] or 0) + 1
end

function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    for key, count in pairs(thread:get("counts")) do
      io.write(string.format("SOAK %s %d\n", key, count))
    end
    for kind, count in pairs(thread:get("sent")) do
      io.write(string.format("SOAK-SENT %s %d\n", kind, count))
    end
  end
end
