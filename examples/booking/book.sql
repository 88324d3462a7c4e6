-- examples/booking/book.sql: make a booking and queue its confirmation task in ONE transaction:
-- both commit, or neither does. No separate message broker, no "dual write" to get wrong.
--   psql -v guest='Ada Lovelace' -v room=101 -v check_in=2025-06-01 -v nights=3 -f book.sql
\set ON_ERROR_STOP on

BEGIN;

INSERT INTO bookings (guest, room, check_in, nights)
VALUES (:'guest', :'room', :'check_in', :'nights')
RETURNING booking_id \gset

SELECT courier.send('booking-tasks',
                    jsonb_build_object('task', 'send-confirmation', 'booking_id', :booking_id)) AS msg_id \gset

COMMIT;

\echo booking :booking_id committed: confirmation task queued as message :msg_id
