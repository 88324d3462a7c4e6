/*
 * The monitoring view of queues, made after every part whose catalog it
 * reads (courier.queue_key: 30_crypto.sql).  A queue shows only to roles
 * with a privilege on it; counts come from courier._queue_stats().
 */
CREATE VIEW courier.queues AS
SELECT q.queue_name, q.visibility_timeout, q.delay, q.retention, q.max_message_size,
	   q.notify, 'courier_' || q.queue_id AS notify_channel,
	   d.queue_name AS dead_letter_queue, q.max_receives, ds.depth AS dead_letter_depth,
	   q.retry_delay, q.retry_backoff, q.retry_max_delay, q.retry_jitter, q.durable_leases,
	   q.fifo, q.content_dedup, CASE WHEN q.fifo THEN q.dedup_window END AS dedup_window,
	   q.created_at, s.depth, s.visible, s.in_flight, s.delayed,
	   pg_catalog.clock_timestamp() - s.oldest_sent_at AS oldest_message_age,
	   s.groups, s.groups_in_flight,
	   pg_catalog.clock_timestamp() - s.oldest_ready_head_sent_at AS oldest_ready_group_age,
	   qk.key_name AS encryption_key
  FROM courier.queue q
  JOIN courier._queue_stats() s ON s.queue_id = q.queue_id
  LEFT JOIN courier.queue d ON d.queue_id = q.dead_letter_queue_id
  LEFT JOIN courier._queue_stats() ds ON ds.queue_id = q.dead_letter_queue_id
  LEFT JOIN courier.queue_key qk ON qk.queue_id = q.queue_id
 WHERE courier.has_queue_privilege(q.queue_name, 'receive')
	OR courier.has_queue_privilege(q.queue_name, 'send');
