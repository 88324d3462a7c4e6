
# Randomized stress test of FIFO queues (doc/API.md, "FIFO queues: message
# groups and deduplication"; issue 3, "Proven"): 8 concurrent consumers,
# 1,000 groups, 50,000 messages, random processing delays, leases that
# expire at once, releases.
#
# Each group gets 50 messages, numbered 1..50 in the order they were sent
# (body "group,seq"), by send_batch with group_ids in 5 transactions of
# 10,000: 3 before the consumers start, 2 while they run.  The groups are
# mixed in a fixed pseudo-random order (by md5), so that messages of a group
# are sometimes next to each other and sometimes far apart.
#
# Each consumer is a psql process running CALL stress_consume(n): a
# procedure that loops over receive(max_messages => 10) and COMMITs after the
# receive and after each message.  For each message it writes a row in
# stress_log (group, seq, consumer, started, finished: clock_timestamp()
# when it began and when it ended processing the message) and acks it in
# the same transaction, so a row exists exactly for each ack that
# succeeded.  Processing takes a random 0-2 ms sleep now and then.  Besides:
# - 2% of the receives use visibility_timeout => '0' and drop what they got
#   (a consumer that died: the leases are over at once);
# - 3% use visibility_timeout => '0' and process the messages anyway: other
#   consumers may receive them meanwhile, and then the ack is stale (55000)
#   and the log row goes with it;
# - 0.5% of the messages are released instead of processed.
# A consumer that loses or gives up a message does not process the rest of
# that group in its batch (it releases them), as a FIFO consumer must.
#
# The log must show: every message processed exactly once (none lost, none
# twice), each group's messages processed in send order (by the time their
# processing ended), and no two messages of a group processed at once (no
# overlapping [started, finished] of different messages of one group).
#
# This is not a benchmark: no assertion is about speed; the time taken is
# reported with note().

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use IPC::Run;
use Test::More;
use Time::HiRes qw(time);

my $n_groups    = 1_000;                    # also in stress_plan below
my $per_group   = 50;                       # also in stress_plan below
my $n_total     = $n_groups * $per_group;
my $batch       = 10_000;
my $n_batches   = $n_total / $batch;
my $n_before    = 3;                        # batches sent before the consumers start
my $n_consumers = 8;
my $t0          = time;

my $node = PostgreSQL::Test::Cluster->new('fifo_stress');
$node->init;
$node->append_conf('postgresql.conf', qq{
log_statement = none
log_min_messages = warning
max_connections = 40
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION pg_courier;
SELECT courier.create_queue('stress', fifo => true, visibility_timeout => '30 seconds');

CREATE TABLE stress_log (grp integer NOT NULL, seq integer NOT NULL, msg_id bigint NOT NULL,
                         consumer integer NOT NULL, receive_count integer NOT NULL,
                         started timestamptz NOT NULL, finished timestamptz NOT NULL);
CREATE TABLE stress_flag (sending_done boolean NOT NULL);
INSERT INTO stress_flag VALUES (false);
CREATE TABLE stress_stats (consumer integer, receives integer, empty_receives integer,
                           processed integer, dropped integer, released integer,
                           stale integer);
-- the order of sending: message k is seq of group grp
CREATE TABLE stress_plan AS
SELECT (row_number() OVER (ORDER BY pos) - 1)::integer AS k, grp,
       row_number() OVER (PARTITION BY grp ORDER BY pos)::integer AS seq
  FROM (SELECT g AS grp, md5(g || ':' || s) AS pos
          FROM generate_series(0, 999) g, generate_series(1, 50) s) p;
CREATE UNIQUE INDEX ON stress_plan (k);
CREATE TYPE stress_msg AS (msg_id bigint, receipt text, body_text text, receive_count integer);

-- Gives back a message this consumer holds; false when the receipt is stale.
CREATE FUNCTION stress_release(receipt text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM courier.release('stress', receipt);
	RETURN true;
EXCEPTION WHEN object_not_in_prerequisite_state THEN
	RETURN false;
END $$;

CREATE PROCEDURE stress_consume(me integer)
LANGUAGE plpgsql AS $$
DECLARE
	qtable text := 'q_' || (SELECT queue_id FROM courier.queue WHERE queue_name = 'stress');
	deadline timestamptz := clock_timestamp() + interval '300 seconds';
	msgs stress_msg[];
	m stress_msg;
	mode float8;
	grp integer;
	started timestamptz;
	lost integer[];
	done boolean;
	n_receives integer := 0;
	n_empty integer := 0;
	n_processed integer := 0;
	n_dropped integer := 0;
	n_released integer := 0;
	n_stale integer := 0;
BEGIN
	PERFORM setseed(me / 100.0);
	LOOP
		EXIT WHEN clock_timestamp() > deadline;
		mode := random();
		msgs := ARRAY(SELECT ROW(r.msg_id, r.receipt, r.body_text, r.receive_count)::stress_msg
		                FROM courier.receive('stress', 10,
		                                     CASE WHEN mode < 0.05 THEN interval '0'
		                                          ELSE interval '30 seconds' END) r);
		COMMIT;
		n_receives := n_receives + 1;
		IF cardinality(msgs) = 0 THEN
			n_empty := n_empty + 1;
			-- done when everything was sent and no message is left (acked ones are deleted)
			EXECUTE format('SELECT (SELECT sending_done FROM stress_flag)
			                   AND NOT EXISTS (SELECT 1 FROM courier.%I)', qtable) INTO done;
			EXIT WHEN done;
			PERFORM pg_sleep(0.002);
			CONTINUE;
		END IF;
		IF mode < 0.02 THEN
			-- the consumer "died": its leases have ended already
			n_dropped := n_dropped + cardinality(msgs);
			CONTINUE;
		END IF;
		lost := '{}';
		FOREACH m IN ARRAY msgs LOOP
			grp := split_part(m.body_text, ',', 1)::integer;
			IF grp = ANY (lost) OR random() < 0.005 THEN
				-- given up, or after an earlier message of its group was lost or
				-- given up in this batch: give it back unprocessed
				IF NOT (grp = ANY (lost)) THEN
					n_released := n_released + 1;
				END IF;
				PERFORM stress_release(m.receipt);
				lost := lost || grp;
				COMMIT;
				CONTINUE;
			END IF;
			started := clock_timestamp();
			IF random() < 0.1 THEN
				PERFORM pg_sleep(random() * 0.002);
			END IF;
			BEGIN
				INSERT INTO stress_log
				VALUES (grp, split_part(m.body_text, ',', 2)::integer, m.msg_id, me, m.receive_count,
				        started, clock_timestamp());
				PERFORM courier.ack('stress', m.receipt);
				n_processed := n_processed + 1;
			EXCEPTION WHEN object_not_in_prerequisite_state THEN
				-- someone received it again after the lease ended: not ours any more
				n_stale := n_stale + 1;
				lost := lost || grp;
			END;
			COMMIT;
		END LOOP;
	END LOOP;
	INSERT INTO stress_stats
	VALUES (me, n_receives, n_empty, n_processed, n_dropped, n_released, n_stale);
	COMMIT;
END $$;
});

my $qid = $node->safe_psql('postgres',
	q{SELECT queue_id FROM courier.queue WHERE queue_name = 'stress'});

# Batch $b: messages k = b*10000 .. b*10000+9999 of stress_plan, in k order, in one
# transaction; so each group's messages are sent in seq order.
sub send_batch_sql
{
	my ($b) = @_;
	my ($lo, $hi) = ($b * $batch, $b * $batch + $batch - 1);
	return qq{
SELECT cardinality(courier.send_batch('stress',
         ARRAY(SELECT grp || ',' || seq FROM stress_plan WHERE k BETWEEN $lo AND $hi ORDER BY k),
         group_ids => ARRAY(SELECT 'g' || grp FROM stress_plan
                             WHERE k BETWEEN $lo AND $hi ORDER BY k)))};
}

my $t_send = time;
for my $b (0 .. $n_before - 1)
{
	is($node->safe_psql('postgres', send_batch_sql($b)), $batch, "batch $b sent");
}
note(sprintf('%d messages sent in %.1f s', $n_before * $batch, time - $t_send));
is( $node->safe_psql('postgres', qq{
SELECT depth || ' ' || (groups = (SELECT count(DISTINCT grp) FROM stress_plan
                                   WHERE k < $n_before * $batch))
  FROM courier.queues WHERE queue_name = 'stress'}),
	($n_before * $batch) . ' true',
	'the queue holds them, in as many groups as were sent to');

# The consumers.
my $t_consume = time;
my (@h, @out, @err);
for my $i (1 .. $n_consumers)
{
	$out[$i] = $err[$i] = '';
	$h[$i] = IPC::Run::start(
		[
			$node->installed_command('psql'), '-X', '-q', '-v', 'ON_ERROR_STOP=1',
			'-d', $node->connstr('postgres'), '-c', "CALL stress_consume($i)"
		],
		'>', \$out[$i], '2>', \$err[$i],
		IPC::Run::timeout(600));
}

# The rest of the messages, while the consumers run.
for my $b ($n_before .. $n_batches - 1)
{
	is($node->safe_psql('postgres', send_batch_sql($b)), $batch, "batch $b sent while consuming");
}
$node->safe_psql('postgres', 'UPDATE stress_flag SET sending_done = true');

for my $i (1 .. $n_consumers)
{
	my $ok = eval { $h[$i]->finish; 1 };
	ok($ok && $h[$i]->result == 0, "consumer $i ended without error")
	  or diag("consumer $i: " . ($@ || '') . $err[$i]);
}
my $t_consumed = time - $t_consume;
note(sprintf('consumed in %.1f s', $t_consumed));
note(
	$node->safe_psql(
		'postgres', q{
SELECT format('receives %s (%s empty), processed %s, dropped %s, released %s, stale acks %s',
              sum(receives), sum(empty_receives), sum(processed), sum(dropped), sum(released),
              sum(stale))
  FROM stress_stats}));

is($node->safe_psql('postgres', 'SELECT count(*) FROM stress_stats'),
	$n_consumers, 'every consumer finished its loop (none ran into its deadline)');

# None lost, none processed twice.
is( $node->safe_psql('postgres', q{
SELECT count(*) || ' ' || count(DISTINCT msg_id) || ' ' || count(DISTINCT (grp, seq))
  FROM stress_log}),
	"$n_total $n_total $n_total",
	'every message was processed (acked) exactly once');
is( $node->safe_psql('postgres', qq{
SELECT count(*) FROM generate_series(0, $n_groups - 1) g, generate_series(1, $per_group) s
 WHERE NOT EXISTS (SELECT 1 FROM stress_log l WHERE l.grp = g AND l.seq = s)}),
	'0', 'no (group, seq) is missing from the log');
is( $node->safe_psql('postgres',
		q{SELECT depth || ' ' || in_flight || ' ' || groups || ' ' || groups_in_flight
		    FROM courier.queues WHERE queue_name = 'stress'}),
	'0 0 0 0', 'the queue is empty');
is($node->safe_psql('postgres', "SELECT count(*) FROM courier.q_$qid"),
	'0', 'no message left in the message table');

# Per group, the messages were processed in send order.
is( $node->safe_psql('postgres', q{
SELECT count(*)
  FROM (SELECT seq, row_number() OVER (PARTITION BY grp ORDER BY finished) AS nth
          FROM stress_log) s
 WHERE seq <> nth}),
	'0', 'each group\'s messages were processed in the order they were sent');

# No two messages of a group processed at once.
my $overlaps = $node->safe_psql('postgres', q{
SELECT count(*) || coalesce(' e.g. ' || min(format('group %s: seq %s by %s [%s, %s] and seq %s by %s [%s, %s]',
                                           a.grp, a.seq, a.consumer, a.started, a.finished,
                                           b.seq, b.consumer, b.started, b.finished)), '')
  FROM stress_log a
  JOIN stress_log b ON b.grp = a.grp AND b.seq > a.seq
 WHERE tstzrange(a.started, a.finished, '[]') && tstzrange(b.started, b.finished, '[]')});
is($overlaps, '0', 'no two messages of a group were processed at the same time');

# The run did what it was meant to: leases ended and messages came back,
# consumers ran in parallel.
my ($redelivered, $consumers, $dropped, $released) = split /\|/, $node->safe_psql('postgres', q{
SELECT (SELECT count(*) FROM stress_log WHERE receive_count > 1),
       (SELECT count(DISTINCT consumer) FROM stress_log),
       (SELECT sum(dropped) FROM stress_stats), (SELECT sum(released) FROM stress_stats)});
cmp_ok($redelivered, '>', 0, "some messages were processed on a later delivery ($redelivered)");
cmp_ok($dropped, '>', 0, "some leases were left to expire ($dropped messages)");
cmp_ok($released, '>', 0, "some messages were released ($released)");
is($consumers, $n_consumers, 'every consumer processed messages');

note(sprintf('total %.1f s', time - $t0));
$node->stop;
done_testing();
