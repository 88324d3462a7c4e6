-- examples/booking/worker.sql: one step of a confirmation worker: take a task, do it, acknowledge it.
-- Run it from as many sessions as you like; each task goes to one worker at a time.
--   psql -v worker=A -f worker.sql                  (-v work_seconds=N: the work takes N seconds)
-- Fails with "no rows returned for \gset" when there is no task to take.
\set ON_ERROR_STOP on
\if :{?worker}
\else
  \set worker A
\endif
\if :{?work_seconds}
\else
  \set work_seconds 0
\endif

-- 1. Take one task. It is now leased to this session: no other worker receives it until the
--    lease (the queue's visibility timeout) expires or the task is acknowledged.
SELECT msg_id, receipt, receive_count, (body ->> 'booking_id')::bigint AS booking_id
FROM courier.receive('booking-tasks') \gset

\echo worker :worker received message :msg_id (receive_count :receive_count) for booking :booking_id

-- 2. The slow part, outside any transaction: here a sleep stands in for sending the e-mail.
SELECT pg_sleep(:work_seconds);

-- 3. Record the result and acknowledge the task in one transaction. If the worker dies before
--    this commits, the lease runs out and another worker receives the task again.
BEGIN;
UPDATE bookings SET confirmation_sent_at = now() WHERE booking_id = :booking_id;
SELECT courier.ack('booking-tasks', :'receipt');
COMMIT;

\echo worker :worker acknowledged message :msg_id: booking :booking_id confirmed
