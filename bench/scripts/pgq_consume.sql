-- PgQ batch consumer: next_batch, get_batch_events, finish_batch (three transactions per batch)
SELECT coalesce(pgq.next_batch('bench_pgq', 'bench'), 0) AS batch_id \gset
\if :batch_id > 0
SELECT * FROM pgq.get_batch_events(:batch_id);
SELECT pgq.finish_batch(:batch_id);
\else
\sleep 10 ms
\endif
