
# Redrive and receive counts across restarts and crashes (doc/API.md,
# "Retries, dead-letter queues, redrive"; README, "Retries, dead-letter
# queues and redrive").
#
# 1. courier.redrive is one transaction.  100,000 dead letters (50,000 from
#    each of two queues, made cheaply: max_receives 1, deliveries with
#    visibility_timeout 0 in batches of 1,000, then receives that move them)
#    are redriven while a second session holds a lock on the second queue's
#    message table: the redrive moves the first 50,000 back and then waits
#    for that lock, provably in the middle of its work (pg_stat_activity,
#    pg_locks).  Its backend is then killed with SIGKILL, which makes the
#    postmaster reinitialize and run crash recovery.  Afterwards the
#    dead-letter queue still holds all 100,000 and the queues of origin none.
#    A second redrive then moves every message exactly once: each is in its
#    queue of origin with its id and body, no dead_letter, and none is left
#    in the dead-letter queue.
#
# 2. Receive counts (they live with the leases):
#    - a clean restart keeps them, with or without durable_leases;
#    - a crash forgets them with the default (UNLOGGED lease table: the next
#      delivery counts 1 again, so a message that crashes the server itself
#      would never reach max_receives);
#    - with durable_leases => true they survive the crash, and the message
#      reaches max_receives and is moved to the dead-letter queue.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use IPC::Run;
use Test::More;
use Time::HiRes qw(time sleep);

my $n_per_queue = 50_000;
my $n_total     = 2 * $n_per_queue;
my $t0          = time;

my $node = PostgreSQL::Test::Cluster->new('redrive_crash');
$node->init;
$node->append_conf('postgresql.conf', qq{
log_statement = none
restart_after_crash = on
max_wal_size = 1GB
checkpoint_timeout = 30min
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION pg_courier;
SELECT courier.create_queue('rc_dlq');
SELECT courier.create_queue('rc_a', dead_letter_queue => 'rc_dlq', max_receives => 1);
SELECT courier.create_queue('rc_b', dead_letter_queue => 'rc_dlq', max_receives => 1);
-- for the receive counts
SELECT courier.create_queue('cnt_dlq');
SELECT courier.create_queue('cnt_plain', dead_letter_queue => 'cnt_dlq', max_receives => 4);
SELECT courier.create_queue('cnt_durable', dead_letter_queue => 'cnt_dlq', max_receives => 4,
                            durable_leases => true);
});

# 50,000 messages to rc_a, then 50,000 to rc_b: rc_a's have the lower ids.
$node->safe_psql('postgres', qq{
DO \$\$
BEGIN
	FOR q IN 0..1 LOOP
		FOR b IN 0..4 LOOP
			PERFORM courier.send_batch(CASE q WHEN 0 THEN 'rc_a' ELSE 'rc_b' END,
				ARRAY(SELECT format('%s-%s', CASE q WHEN 0 THEN 'a' ELSE 'b' END, g)
				        FROM generate_series(b * 10000 + 1, b * 10000 + 10000) g));
		END LOOP;
	END LOOP;
END \$\$;
});
is( $node->safe_psql('postgres',
		q{SELECT string_agg(queue_name || ':' || depth, ' ' ORDER BY queue_name)
		    FROM courier.queues WHERE queue_name IN ('rc_a', 'rc_b')}),
	"rc_a:$n_per_queue rc_b:$n_per_queue",
	'100,000 messages sent');

# The one allowed delivery of each, 1,000 per transaction, leases ending at
# once; then receives that find them delivered max_receives times move them.
$node->safe_psql('postgres', q{
DO $$
DECLARE
	q text;
	n bigint;
BEGIN
	FOREACH q IN ARRAY ARRAY['rc_a', 'rc_b'] LOOP
		LOOP
			SELECT count(*) INTO n FROM courier.receive(q, 1000, '0') r WHERE r.receive_count = 1;
			COMMIT;
			EXIT WHEN n = 0;
		END LOOP;
	END LOOP;
END $$;
});
$node->safe_psql('postgres', q{
DO $$
DECLARE
	q text;
BEGIN
	FOREACH q IN ARRAY ARRAY['rc_a', 'rc_b'] LOOP
		FOR i IN 1..200 LOOP
			PERFORM courier.receive(q, 1000, '0');
			COMMIT;
			EXIT WHEN (SELECT depth FROM courier.queues WHERE queue_name = q) = 0;
		END LOOP;
	END LOOP;
END $$;
});
my $counts_q = q{SELECT string_agg(queue_name || ':' || depth, ' ' ORDER BY queue_name)
                   FROM courier.queues WHERE queue_name IN ('rc_a', 'rc_b', 'rc_dlq')};
is($node->safe_psql('postgres', $counts_q),
	"rc_a:0 rc_b:0 rc_dlq:$n_total", '100,000 messages dead-lettered');

my $dlq_id = $node->safe_psql('postgres',
	q{SELECT queue_id FROM courier.queue WHERE queue_name = 'rc_dlq'});
my $a_id = $node->safe_psql('postgres',
	q{SELECT queue_id FROM courier.queue WHERE queue_name = 'rc_a'});
my $b_id = $node->safe_psql('postgres',
	q{SELECT queue_id FROM courier.queue WHERE queue_name = 'rc_b'});

# What should come back: id, body and queue of origin of every dead letter.
$node->safe_psql('postgres', qq{
CREATE TABLE expected_msgs AS
  SELECT msg_id, body_text, dead_letter->>'queue' AS origin FROM courier.q_$dlq_id;
});
is( $node->safe_psql('postgres', q{
SELECT count(*) || ' ' || count(DISTINCT msg_id) || ' ' || count(DISTINCT body_text) || ' '
       || count(*) FILTER (WHERE origin = 'rc_a' AND body_text LIKE 'a-%') || ' '
       || count(*) FILTER (WHERE origin = 'rc_b' AND body_text LIKE 'b-%')
  FROM expected_msgs}),
	"$n_total $n_total $n_total $n_per_queue $n_per_queue",
	'each dead letter is there once, with its body and the queue it came from');
cmp_ok(
	$node->safe_psql('postgres',
		q{SELECT max(msg_id) FILTER (WHERE origin = 'rc_a') < min(msg_id) FILTER (WHERE origin = 'rc_b')
		    FROM expected_msgs}),
	'eq', 't', "rc_a's messages have the lower ids, so a redrive moves them first");
note(sprintf('dead letters made in %.1f s', time - $t0));

# Receive counts: two deliveries of one message in each queue.
$node->safe_psql('postgres', q{
SELECT courier.send('cnt_plain', 'plain'::text);
SELECT courier.send('cnt_durable', 'durable'::text);
});
my $deliver_q = q{
SELECT string_agg(q || ':' || coalesce((SELECT r.receive_count::text FROM courier.receive(q, 1, '0') r),
                                       'nothing'), ' ' ORDER BY q)
  FROM unnest(ARRAY['cnt_durable', 'cnt_plain']) q};
is($node->safe_psql('postgres', $deliver_q),
	'cnt_durable:1 cnt_plain:1', 'first deliveries');
is($node->safe_psql('postgres', $deliver_q),
	'cnt_durable:2 cnt_plain:2', 'second deliveries');

# A clean restart keeps receive counts, durable or not.
$node->restart;
is($node->safe_psql('postgres', $deliver_q),
	'cnt_durable:3 cnt_plain:3',
	'after a clean restart both queues count on: third deliveries');
is($node->safe_psql('postgres', $counts_q),
	"rc_a:0 rc_b:0 rc_dlq:$n_total", 'the dead letters are still there after the restart');

# The redrive, stopped half-way: a session holds a lock on rc_b's message
# table, which the redrive needs only after it has moved rc_a's messages.
my $connstr = $node->connstr('postgres');
my ($lock_out, $lock_err) = ('', '');
my $locker = IPC::Run::start(
	[
		'psql', '-XAtq', '-d', "$connstr application_name=rc_locker", '-c',
		"BEGIN; LOCK TABLE courier.q_$b_id IN SHARE MODE; SELECT pg_sleep(600); COMMIT;"
	],
	'<', \undef, '>', \$lock_out, '2>', \$lock_err);
ok( $node->poll_query_until('postgres', qq{
SELECT count(*) = 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
 WHERE a.application_name = 'rc_locker' AND l.relation = 'courier.q_$b_id'::regclass
   AND l.mode = 'ShareLock' AND l.granted}),
	"a session holds a lock on rc_b's message table");

my ($redrive_out, $redrive_err) = ('', '');
my $redrive = IPC::Run::start(
	[
		'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', "$connstr application_name=rc_redrive",
		'-c', "SELECT 'moved ' || courier.redrive('rc_dlq')"
	],
	'<', \undef, '>', \$redrive_out, '2>', \$redrive_err);
my $t_redrive = time;
ok( $node->poll_query_until('postgres', qq{
SELECT count(*) = 1 FROM pg_stat_activity a
 WHERE a.application_name = 'rc_redrive' AND a.state = 'active'
   AND a.query LIKE '%courier.redrive%' AND a.wait_event_type = 'Lock'
   AND EXISTS (SELECT FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted
                  AND l.relation = 'courier.q_$b_id'::regclass)}),
	"the redrive is running, waiting for rc_b's message table");
is( $node->safe_psql('postgres', qq{
SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
 WHERE a.application_name = 'rc_redrive' AND l.granted AND l.mode = 'RowExclusiveLock'
   AND l.relation IN ('courier.q_$a_id'::regclass, 'courier.q_$dlq_id'::regclass)}),
	'2',
	"... having written to rc_a's and the dead-letter queue's message tables (rc_a's part is done)");
note(sprintf('redrive stopped half-way after %.1f s', time - $t_redrive));
is($node->safe_psql('postgres', $counts_q),
	"rc_a:0 rc_b:0 rc_dlq:$n_total", 'other sessions see none of it yet');

# kill -9 the redrive's backend: the postmaster kills every other backend
# (the lock holder too), reinitializes and runs crash recovery.
my $redrive_pid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE application_name = 'rc_redrive'});
like($redrive_pid, qr/^\d+$/, 'the redrive backend has a pid');
my $log_offset = -s $node->logfile;
is(kill('KILL', $redrive_pid), 1, 'SIGKILL sent to the redrive backend');
$redrive->finish;
$locker->finish;
unlike($redrive_out, qr/moved/, 'the redrive never returned') or diag($redrive_out);
like($redrive_err, qr/server closed the connection|terminat|connection to server/i,
	'the redrive client lost its connection') or diag($redrive_err);

# wait for the postmaster to notice, reinitialize and finish recovery
my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
sleep(0.1)
  until $node->log_contains(qr/database system is ready to accept connections/, $log_offset)
  or time > $deadline;
ok($node->log_contains(qr/was terminated by signal 9/, $log_offset),
	'the server saw the backend killed by SIGKILL');
ok($node->log_contains(qr/automatic recovery in progress/, $log_offset),
	'the server went through crash recovery');
ok($node->poll_query_until('postgres', 'SELECT 1', '1'), 'the server is back');

# The redrive moved nothing.
is($node->safe_psql('postgres', $counts_q),
	"rc_a:0 rc_b:0 rc_dlq:$n_total",
	'after the crash the dead-letter queue still holds all 100,000, the queues of origin none');
is( $node->safe_psql('postgres', qq{
SELECT count(*) || ' ' || count(m.dead_letter) || ' '
       || count(*) FILTER (WHERE m.body_text = e.body_text AND m.dead_letter->>'queue' = e.origin)
  FROM courier.q_$dlq_id m JOIN expected_msgs e USING (msg_id)}),
	"$n_total $n_total $n_total",
	'every dead letter is intact, with its dead_letter');

# Receive counts after the crash: forgotten by default, kept with durable_leases.
is($node->safe_psql('postgres', $deliver_q),
	'cnt_durable:4 cnt_plain:1',
	'after a crash: durable_leases counts on (4th delivery), the default starts over at 1');
is($node->safe_psql('postgres', $deliver_q),
	'cnt_durable:nothing cnt_plain:2',
	'so the durable one is moved at max_receives (4) while the other is delivered again');
is( $node->safe_psql('postgres', q{
SELECT string_agg(r.body_text || ':' || (r.dead_letter->>'queue') || ':'
                  || (r.dead_letter->>'receive_count'), ' ')
  FROM courier.receive('cnt_dlq', 10, '0') r}),
	'durable:cnt_durable:4',
	'the dead letter of the durable queue records 4 deliveries');

# The second redrive moves every message exactly once.
my $t_second = time;
is($node->safe_psql('postgres', q{SELECT courier.redrive('rc_dlq')}),
	$n_total, 'a second redrive moves all 100,000');
note(sprintf('second redrive took %.1f s', time - $t_second));
is($node->safe_psql('postgres', $counts_q),
	"rc_a:$n_per_queue rc_b:$n_per_queue rc_dlq:0",
	'every message is back in its queue of origin, none left in the dead-letter queue');
is( $node->safe_psql('postgres', qq{
WITH back AS (
  SELECT 'rc_a' AS queue, msg_id, body_text, dead_letter FROM courier.q_$a_id
  UNION ALL
  SELECT 'rc_b', msg_id, body_text, dead_letter FROM courier.q_$b_id)
SELECT count(*) || ' ' || count(DISTINCT b.msg_id) || ' '
       || count(*) FILTER (WHERE b.body_text = e.body_text AND b.queue = e.origin) || ' '
       || count(b.dead_letter) || ' ' || count(*) FILTER (WHERE e.msg_id IS NULL)
  FROM back b LEFT JOIN expected_msgs e USING (msg_id)}),
	"$n_total $n_total $n_total 0 0",
	'each message exactly once, by id and body, in the queue it came from, without dead_letter');
is( $node->safe_psql('postgres', qq{
SELECT (SELECT count(*) FROM courier.q_$dlq_id) + (SELECT count(*) FROM courier.l_$dlq_id)}),
	'0', 'no message and no lease left in the dead-letter queue');

# And they are receivable as first deliveries, in id order.
is( $node->safe_psql('postgres', q{
SELECT string_agg(body_text || ':' || receive_count, ' ' ORDER BY msg_id)
  FROM courier.receive('rc_a', 3, '1 hour')}),
	'a-1:1 a-2:1 a-3:1', 'redriven messages are first deliveries again, oldest first');

note(sprintf('total %.1f s', time - $t0));
$node->stop;
done_testing();
