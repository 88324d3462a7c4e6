-- examples/booking/setup.sql: the booking example's schema and queue (README "Getting started").
-- Run once in a fresh database, as a superuser:   psql -f setup.sql
\set ON_ERROR_STOP on

CREATE EXTENSION IF NOT EXISTS pg_courier;

CREATE TABLE bookings (
    booking_id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    guest                text NOT NULL,
    room                 integer NOT NULL,
    check_in             date NOT NULL,
    nights               integer NOT NULL CHECK (nights > 0),
    booked_at            timestamptz NOT NULL DEFAULT now(),
    confirmation_sent_at timestamptz            -- set by the worker that sent the e-mail
);

-- Confirmation e-mails are sent by workers, outside the booking transaction.
-- A worker that takes a task must acknowledge it within the visibility timeout, or the task is
-- delivered again to another worker. 2 seconds keeps the demo short; the default is 30 seconds.
SELECT courier.create_queue('booking-tasks', visibility_timeout => '2 seconds');
