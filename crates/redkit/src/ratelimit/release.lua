-- Releases permit ARGV[1] from the concurrency limiter KEYS[1]; returns 1 if it was held.
return redis.call('ZREM', KEYS[1], ARGV[1])
