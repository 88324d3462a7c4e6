# Streams under concurrency (issue 7, "Proven"; doc/API.md, Streams): 4
# producers append 100,000 messages over 16 partitions and 1,000 keys while
# 2 consumer groups of 3 consumers each read them.  Each group must see every
# message exactly once across commits, and each key's messages in append
# order; one consumer of the first group is killed mid-way, its partitions
# are taken over when its leases end, and nothing is lost.
#
# Producer p owns the keys k = p, p + 4, ... (250 keys), and appends each
# key's messages with sequence numbers 0..99 in order, 100 messages per
# transaction.  A consumer reads up to 500 messages, records them in table
# got and commits its position in the same transaction, so "exactly once"
# is exact here: the killed consumer's open transaction rolls back with its
# records, and the next holder reads those messages again.
#
# No assertion is about speed; the only waits are for conditions
# (poll_query_until) and for the client processes to end.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $messages = 100_000;
my $lease = '3 seconds';

my $node = PostgreSQL::Test::Cluster->new('streams');
$node->init;
$node->append_conf('postgresql.conf', qq{
log_statement = none
max_connections = 40
courier.max_wait = '1h'
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION pg_courier;
SELECT courier.create_stream('cs', partitions => 16);
SELECT courier.create_group('cs', 'ga', 'earliest');
SELECT courier.create_group('cs', 'gb', 'earliest');
CREATE TABLE got (id bigserial PRIMARY KEY, grp text, consumer text, part integer,
                  k integer, s integer, position bigint);
});
my $stream_id = $node->safe_psql('postgres',
	"SELECT stream_id FROM courier.stream WHERE stream_name = 'cs'");

my $connstr = $node->connstr('postgres');
my @procs;

sub start_psql
{
	my ($name, $sql) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', "$connstr application_name=$name", '-c', $sql ],
		'<', \undef, '>', \$out, '2>', \$err);
	push @procs, { name => $name, h => $h, out => \$out, err => \$err };
	return $h;
}

# Consumers first, so that they are reading while the producers append.
for my $g ('ga', 'gb')
{
	for my $c ('c1', 'c2', 'c3')
	{
		start_psql("$g-$c", qq{
DO \$\$
DECLARE
	n integer;
	total bigint;
	stop_at timestamptz := clock_timestamp() + interval '240 seconds';
BEGIN
	LOOP
		WITH r AS (SELECT * FROM courier.read('cs', '$g', '$c', 500, lease => '$lease',
											  wait => '1 second')),
			 i AS (INSERT INTO got (grp, consumer, part, k, s, position)
				   SELECT '$g', '$c', r.partition, (r.body->>'k')::integer,
						  (r.body->>'s')::integer, r.position FROM r
				   ORDER BY r.position RETURNING 1)
		SELECT count(*) INTO n FROM i;
		IF n > 0 THEN
			PERFORM courier.commit('cs', '$g', '$c');
		END IF;
		COMMIT;
		SELECT count(*) INTO total FROM got WHERE grp = '$g';
		EXIT WHEN total >= $messages OR clock_timestamp() > stop_at;
	END LOOP;
END
\$\$;
});
	}
}

for my $p (0 .. 3)
{
	my $per = $messages / 4;
	start_psql("producer-$p", qq{
DO \$\$
BEGIN
	FOR b IN 0 .. $per / 100 - 1 LOOP
		PERFORM courier.append_batch('cs',
					array_agg(jsonb_build_object('k', $p + 4 * (i % 250), 's', i / 250) ORDER BY i),
					array_agg(($p + 4 * (i % 250))::text ORDER BY i))
		   FROM generate_series(b * 100, b * 100 + 99) i;
		COMMIT;
	END LOOP;
END
\$\$;
});
}

# Kill ga's consumer c1 once the group is well under way and c1 holds partitions.
ok( $node->poll_query_until('postgres', q{
SELECT (SELECT count(*) FROM got WHERE grp = 'ga') >= 30000
   AND EXISTS (SELECT FROM courier.stream_cursor c JOIN courier.stream_group g USING (group_id)
                WHERE g.group_name = 'ga' AND c.holder = 'c1')}),
	'group ga is under way and consumer c1 holds partitions');
my $held = $node->safe_psql('postgres', q{
SELECT count(*) FROM courier.stream_cursor c JOIN courier.stream_group g USING (group_id)
 WHERE g.group_name = 'ga' AND c.holder = 'c1'});
my $held_parts = $node->safe_psql('postgres', q{
SELECT coalesce(string_agg(c.part::text, ','), '0')
  FROM courier.stream_cursor c JOIN courier.stream_group g USING (group_id)
 WHERE g.group_name = 'ga' AND c.holder = 'c1'});
is( $node->safe_psql('postgres',
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'ga-c1'"),
	't', "consumer ga-c1 killed while holding $held partitions");

# Everyone else ends by itself: producers when done, consumers when their group has all.
for my $proc (@procs)
{
	my $ok = eval { $proc->{h}->finish; 1 };
	if ($proc->{name} eq 'ga-c1')
	{
		isnt($proc->{h}->result(0), 0, 'the killed consumer ended with an error');
		next;
	}
	ok($ok && $proc->{h}->result(0) == 0, "$proc->{name} ended cleanly")
	  or diag("$proc->{name}: ${$proc->{err}}");
}

is($node->safe_psql('postgres', "SELECT count(*) FROM courier.s_$stream_id"),
	$messages, 'all messages were appended');
for my $g ('ga', 'gb')
{
	is( $node->safe_psql('postgres', qq{
SELECT count(*) || ' ' || count(DISTINCT position) FROM got WHERE grp = '$g'}),
		"$messages $messages", "group $g read every message exactly once");
	is( $node->safe_psql('postgres', qq{
SELECT count(*) FROM courier.s_$stream_id d
 WHERE NOT EXISTS (SELECT FROM got WHERE grp = '$g' AND got.position = d.position)}),
		'0', "group $g read exactly the messages appended");
	is( $node->safe_psql('postgres', qq{
SELECT count(*) FROM (SELECT s, lag(s) OVER (PARTITION BY k ORDER BY id) AS prev
                        FROM got WHERE grp = '$g') x
 WHERE s <> coalesce(prev + 1, 0)}),
		'0', "group $g read each key's messages in append order");
	is( $node->safe_psql('postgres', qq{
SELECT count(*) FROM (SELECT k FROM got WHERE grp = '$g' GROUP BY k
                       HAVING count(DISTINCT part) > 1) x}),
		'0', "group $g: each key in one partition");
	is( $node->safe_psql('postgres', qq{
SELECT lag FROM courier.stream_groups WHERE group_name = '$g'}),
		'0', "group $g has no lag left");
}
ok( $node->safe_psql('postgres', q{
SELECT count(*) FROM got WHERE grp = 'ga' AND consumer = 'c1'}) > 0,
	'the killed consumer had read messages');
# The partitions c1 held when it was killed: every message of them that c1
# had not read (it held them, so nobody else had) was read by another
# consumer, which had to take over the partition's lease after it expired.
is( $node->safe_psql('postgres', qq{
SELECT count(*) FROM courier.s_$stream_id d
 WHERE d.part IN ($held_parts)
   AND NOT EXISTS (SELECT FROM got WHERE grp = 'ga' AND got.position = d.position
                      AND got.consumer <> 'c1')
   AND NOT EXISTS (SELECT FROM got WHERE grp = 'ga' AND got.position = d.position
                      AND got.consumer = 'c1')}),
	'0', "the killed consumer's partitions ($held_parts) were taken over: every message in them was read");
ok( $node->safe_psql('postgres', qq{
SELECT count(*) FROM got WHERE grp = 'ga' AND consumer <> 'c1' AND part IN ($held_parts)}) > 0,
	'other consumers read in the partitions the killed consumer held');
is( $node->safe_psql('postgres', q{
SELECT count(DISTINCT consumer) FROM got WHERE grp = 'gb'}),
	'3', 'partitions were spread over all three consumers of gb');

# Long polling: a read that waits is woken by the commit of an append to its
# stream, not by its timeout (50 minutes, far beyond the harness timeout: a
# lost wake-up fails the test), and not by an append that rolls back.
$node->safe_psql('postgres', q{
SELECT courier.create_stream('lp');
SELECT courier.create_group('lp', 'g', 'latest');
});
my ($lp_out, $lp_err) = ('', '');
my $lp_timer = IPC::Run::timer($PostgreSQL::Test::Utils::timeout_default);
my $lp = IPC::Run::start(
	[
		'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', "$connstr application_name=lp_reader", '-c',
		"SELECT body_text FROM courier.read('lp', 'g', 'w', 10, lease => '1 hour', wait => '50 minutes')"
	],
	'<', \undef, '>', \$lp_out, '2>', \$lp_err, $lp_timer);
ok( $node->poll_query_until('postgres', q{
SELECT count(*) = 1 FROM pg_stat_activity
 WHERE application_name = 'lp_reader' AND wait_event_type = 'Extension'}),
	'the read waits, sleeping');
$node->safe_psql('postgres', q{
BEGIN; SELECT courier.append('lp', 'never'::text); ROLLBACK;
SELECT courier.append('lp', 'woken'::text);
});
my $lp_ok = eval { $lp->finish; 1 };
ok($lp_ok && !$lp_timer->is_expired, 'the waiting read returned once the append committed');
is($lp_out, "woken\n", 'it returned the committed message only');

$node->stop;
done_testing();
