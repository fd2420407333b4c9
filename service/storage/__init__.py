"""Everything Redis: the client and key space, the redis.url forms, the embedded server and the stores."""
