-- examples/booking/book-rollback.sql: the same booking transaction, but the payment is declined
-- after the row was written and the task was sent, so it rolls back: no booking and no message.
-- (The message id it was given is simply never used, as with any sequence.)
--   psql -v guest='Grace Hopper' -v room=102 -v check_in=2025-06-02 -v nights=2 -f book-rollback.sql
\set ON_ERROR_STOP on

BEGIN;

INSERT INTO bookings (guest, room, check_in, nights)
VALUES (:'guest', :'room', :'check_in', :'nights')
RETURNING booking_id \gset

SELECT courier.send('booking-tasks',
                    jsonb_build_object('task', 'send-confirmation', 'booking_id', :booking_id)) AS msg_id \gset

-- ... the card is declined ...
ROLLBACK;

\echo booking :booking_id rolled back: message :msg_id was never committed
