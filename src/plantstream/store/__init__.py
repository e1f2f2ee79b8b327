"""PostgreSQL storage: schema, partitions, sensor registry, and the data-access functions."""
