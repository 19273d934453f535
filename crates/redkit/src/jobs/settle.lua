-- Settles a job (settle_job in settle_job.lua). ARGV[2]: id, ARGV[3]: token, ARGV[4]:
-- outcome, ARGV[5]: error, ARGV[6]: jitter, ARGV[7..10]: retention (completed count,
-- completed age ms, dead count, dead age ms), ARGV[11]: events channel, ARGV[12]: instance.
return settle_job(ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]),
                  tonumber(ARGV[9]), tonumber(ARGV[10]), ARGV[11], ARGV[12])
