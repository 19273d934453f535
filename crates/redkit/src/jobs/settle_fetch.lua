-- A worker's ack and its next lease in one round trip (as BullMQ's moveToCompleted hands
-- back the next job): settles like settle.lua (ARGV[2..12]), then leases like fetch.lua,
-- ARGV[13]: worker, ARGV[14]: lease ms, ARGV[15]: most jobs, ARGV[16]: token prefix.
-- Expired leases are looked for at most every 250 ms (see lease.lua). Returns the
-- outcome, then what lease_jobs returns.
local outcome = settle_job(ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]),
                           tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]), ARGV[11], ARGV[12])
local out = lease_jobs(ARGV[13], tonumber(ARGV[14]), tonumber(ARGV[15]), ARGV[16], tonumber(ARGV[9]), tonumber(ARGV[10]), 250)
table.insert(out, 1, outcome)
return out
