-- Leases jobs (lease_jobs in lease.lua). ARGV[2]: worker, ARGV[3]: lease ms, ARGV[4]: most
-- jobs, ARGV[5]: token prefix, ARGV[6], ARGV[7]: dead retention (count, age ms).
return lease_jobs(ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]), 0)
