-- wrk script: a burst of BURST kintone ADD_RECORD webhooks (default 500), each for a record of its
-- own, then stop; run with as many connections as the burst so they arrive together.
local burst = tonumber(os.getenv("BURST") or "500")
local threads = tonumber(os.getenv("THREADS") or "2")
local next_thread = 0

function setup(thread)
  next_thread = next_thread + 1
  thread:set("tid", next_thread)
end

function init(args)
  sent = 0
  done = 0
  share = math.ceil(burst / threads)
end

request = function()
  sent = sent + 1
  local id = tid * 1000000 + sent
  local body = string.format([[{"id":"burst-%d","type":"ADD_RECORD","app":{"id":"12","name":"bench"},
"record":{"$id":{"type":"__ID__","value":"%d"},"$revision":{"type":"__REVISION__","value":"1"},
"氏名":{"type":"SINGLE_LINE_TEXT","value":"山田 太郎"},
"電話番号":{"type":"SINGLE_LINE_TEXT","value":"090-1%03d-%04d"}},
"recordTitle":"bench","url":"https://example.cybozu.com/k/12/show#record=%d"}]],
    id, id, tid, sent % 10000, id)
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end

response = function(status, headers, body)
  done = done + 1
  if done >= share then
    wrk.thread:stop()
  end
end
