
# FIFO queues across a crash (README, "FIFO queues: message groups and
# deduplication"; doc/API.md, "FIFO queues").
#
# The group table of a FIFO queue is UNLOGGED: a crash empties it, and the
# first receive afterwards must rebuild it from the messages.  This test
# proves that nothing is lost and the order holds across kill -9:
#   - 3 groups, 200 messages each, sent in interleaved committed transactions;
#     the first message of each group is in flight (leased) at the crash, a
#     dedup id was used before it, and a send of group "b" is still open
#     (uncommitted) when its backend is killed with SIGKILL (the postmaster
#     then reinitializes and runs crash recovery);
#   - after recovery the group table is empty, then rebuilt by the first
#     receive (server log), and every committed message is delivered exactly
#     once more per group in send order, the in-flight one first (its lease
#     was lost with the crash, so it counts as delivery 1 again); the
#     uncommitted send never appears;
#   - the dedup id used before the crash still deduplicates after it
#     (courier.d_<id> is logged).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('fifo_crash');
$node->init;
$node->append_conf('postgresql.conf', "restart_after_crash = on\n");
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION pg_courier;
SELECT courier.create_queue('fc', fifo => true);
});
my $qid = $node->safe_psql('postgres',
	"SELECT queue_id FROM courier.queue WHERE queue_name = 'fc'");

# 200 committed transactions, each sending one message to each group, in a
# rotating order; bodies are "<group>:<seq>"
$node->safe_psql('postgres', q{
DO $$
BEGIN
	FOR i IN 1 .. 200 LOOP
		PERFORM courier.send('fc', g || ':' || i, group_id => g)
		   FROM unnest(CASE i % 3 WHEN 0 THEN ARRAY['a', 'b', 'c']
								  WHEN 1 THEN ARRAY['c', 'a', 'b']
								  ELSE ARRAY['b', 'c', 'a'] END) g;
		COMMIT;
	END LOOP;
END $$;
});
my $dedup_first = $node->safe_psql('postgres',
	"SELECT courier.send('fc', 'dedup'::text, group_id => 'd', dedup_id => 'once')");

# every group's head in flight at the crash (groups are served in turn, and a
# group in flight is skipped)
my $inflight = $node->safe_psql('postgres', q{
	SELECT string_agg(body_text, ' ' ORDER BY body_text) FROM (
		SELECT (courier.receive('fc', 1, '1 hour')).body_text FROM generate_series(1, 3)) r});
is($inflight, 'a:1 b:1 c:1', 'the heads of groups a, b and c are leased before the crash');

# an open transaction with a send of group b at the crash; SIGKILL of its
# backend makes the postmaster reinitialize and run crash recovery, which
# empties UNLOGGED tables
my $open = $node->background_psql('postgres', on_error_stop => 0);
my $pid = $open->query_safe(
	"BEGIN; SELECT courier.send('fc', 'b:uncommitted'::text, group_id => 'b'); SELECT pg_backend_pid();");
$pid =~ s/.*\n//s;
kill 'KILL', $pid;
$node->poll_query_until('postgres', 'SELECT true', 't')
  or die "the server did not come back after the crash";
like(slurp_file($node->logfile), qr/all server processes terminated; reinitializing/,
	'the crash made the server reinitialize');

is($node->safe_psql('postgres', "SELECT count(*) FROM courier.g_$qid"),
	'0', 'the crash emptied the UNLOGGED group table');

is($node->safe_psql('postgres',
	"SELECT courier.send('fc', 'dedup again'::text, group_id => 'd', dedup_id => 'once')"),
	$dedup_first, 'a dedup id used before the crash still returns the original message');

# drain one message at a time, acknowledging each, and record the order
$node->safe_psql('postgres', q{
CREATE TABLE got (n serial, body text, group_id text, receive_count int);
DO $$
DECLARE
	r record;
BEGIN
	LOOP
		SELECT * INTO r FROM courier.receive('fc', 1, '1 hour');
		EXIT WHEN r.msg_id IS NULL;
		INSERT INTO got (body, group_id, receive_count)
			VALUES (r.body_text, r.group_id, r.receive_count);
		PERFORM courier.ack('fc', r.receipt);
		COMMIT;
	END LOOP;
END $$;
});

like(slurp_file($node->logfile), qr/rebuilt the message groups of FIFO queue "fc"/,
	'the first receive after the crash rebuilt the groups');

is($node->safe_psql('postgres',
	"SELECT count(*) FROM got WHERE group_id IN ('a', 'b', 'c')"),
	'600', 'all 600 committed messages of groups a, b and c are delivered after the crash');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM got WHERE body = 'b:uncommitted'"),
	'0', 'the send that was open at the crash is not delivered');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (
		SELECT group_id, split_part(body, ':', 2)::int AS seq,
			   row_number() OVER (PARTITION BY group_id ORDER BY n) AS pos
		  FROM got WHERE group_id IN ('a', 'b', 'c')) x
	 WHERE seq <> pos}),
	'0', 'each group is delivered in send order, with no gaps or repeats');
is($node->safe_psql('postgres',
	"SELECT string_agg(body || '/' || receive_count, ' ' ORDER BY body) FROM got
	  WHERE split_part(body, ':', 2) = '1' AND group_id IN ('a', 'b', 'c')"),
	'a:1/1 b:1/1 c:1/1',
	'the messages in flight at the crash come again (first in their groups), as delivery 1');
is($node->safe_psql('postgres', "SELECT count(*) FROM got WHERE group_id = 'd'"),
	'1', 'the deduplicated message exists once');
is($node->safe_psql('postgres',
	"SELECT depth, groups FROM courier.queues WHERE queue_name = 'fc'"),
	'0|0', 'the queue and its groups are empty at the end');

$node->stop;
done_testing();
