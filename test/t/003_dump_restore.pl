
# pg_dump / pg_restore of a database that uses pg_courier (README,
# "Backup and restore"): the dump carries queue definitions and settings,
# grants, the message id sequence and all messages.
#
# One cluster.  Database courier_src holds three queues with non-default
# settings, a role granted send on one queue and receive on another, and
# messages of all three body types with attributes: visible ones, delayed
# ones (sent with a delay, or released with a delay), in-flight ones and
# acked ones.  It is dumped with pg_dump -Fc and restored with pg_restore
# into a fresh database (the dump's CREATE EXTENSION comes first).  In the
# restored database:
#   - the queues and their settings and counts are those of the source;
#   - the role can send and receive exactly where it was granted;
#   - every message that was not acked is there exactly once with its body,
#     attributes and sent_at, and is receivable (delayed and leased ones
#     after their time: the test moves their timestamps back rather than
#     sleep); acked messages are absent;
#   - new message ids are larger than every id issued in the source, and a
#     new queue can be created (both sequences were carried).
# A dump made with --no-unlogged-table-data restores as well: the leases
# (UNLOGGED) are gone, so every message not sent with a delay is receivable.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use IPC::Run;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
$node->append_conf('postgresql.conf', "log_statement = none\n");
$node->start;

my $src = 'courier_src';
$node->safe_psql('postgres', qq{CREATE DATABASE $src});
$node->safe_psql($src, q{
CREATE EXTENSION pg_courier;
CREATE ROLE regress_dump_app LOGIN;

SELECT courier.create_queue('dq_orders', visibility_timeout => '2 minutes',
                            retention => '3 days', max_message_size => 4096);
SELECT courier.alter_queue('dq_orders', retention => '2 days');
SELECT courier.create_queue('dq_mail', visibility_timeout => '45 seconds', delay => '10 minutes',
                            retention => '7 days', max_message_size => 100000);
SELECT courier.create_queue('dq_plain');
SELECT courier.grant('dq_orders', 'regress_dump_app', 'send');
SELECT courier.grant('dq_mail', 'regress_dump_app', 'receive');

-- dq_orders (no default delay): text, jsonb and bytea bodies with and without
-- attributes of every allowed value type, a batch, and two delayed sends
SELECT courier.send('dq_orders', format('text %s', g),
                    jsonb_build_object('n', g, 'kind', 'text', 'even', g % 2 = 0))
  FROM generate_series(1, 6) g;
SELECT courier.send('dq_orders', jsonb_build_object('order', g, 'items', jsonb_build_array(g, 'x')),
                    jsonb_build_object('kind', 'jsonb', 'total', g * 1.5))
  FROM generate_series(7, 10) g;
SELECT courier.send('dq_orders', convert_to(format('bytes %s', g), 'UTF8'),
                    CASE WHEN g > 11 THEN '{"kind": "bytea"}'::jsonb END)
  FROM generate_series(11, 13) g;
SELECT courier.send_batch('dq_orders', ARRAY['batch 1', 'batch 2', 'batch 3'],
                          ARRAY['{"b": 1}', NULL, '{"b": 3}']::jsonb[]);
SELECT courier.send('dq_orders', 'delayed text', '{"delayed": true}', delay => '15 minutes');
SELECT courier.send('dq_orders', '{"delayed": "json"}'::jsonb, delay => '15 minutes');

-- dq_mail (default delay 10 minutes): some sent without delay
SELECT courier.send('dq_mail', jsonb_build_object('to', format('guest%s@example.org', g)),
                    jsonb_build_object('lang', 'en'), delay => '0')
  FROM generate_series(1, 3) g;
SELECT courier.send('dq_mail', convert_to('raw mail', 'UTF8'), '{"raw": true}', delay => '0');
SELECT courier.send('dq_mail', 'mail delayed by the queue default');

SELECT courier.send('dq_plain', format('plain %s', g)) FROM generate_series(1, 3) g;

-- in flight (one-hour leases), with their receipts
CREATE TABLE receipts AS
  SELECT 'dq_orders' AS queue_name, msg_id, receipt FROM courier.receive('dq_orders', 3, '1 hour')
  UNION ALL
  SELECT 'dq_plain', msg_id, receipt FROM courier.receive('dq_plain', 1, '1 hour');

-- acked
CREATE TABLE acked AS
  WITH r AS (SELECT 'dq_orders' AS queue_name, * FROM courier.receive('dq_orders', 2, '1 hour')
             UNION ALL
             SELECT 'dq_mail', * FROM courier.receive('dq_mail', 1, '1 hour'))
  SELECT r.queue_name, r.msg_id FROM r, LATERAL courier.ack(r.queue_name, r.receipt);

-- received, then released with a one-hour delay
SELECT count(*) FROM courier.receive('dq_orders', 1, '1 hour') r,
                     LATERAL courier.release('dq_orders', r.receipt, '1 hour');
});

# What the source holds.  Queue settings and counts (oldest_message_age
# depends on the clock and is left out):
my $queues_q = q{
SELECT queue_name, visibility_timeout, delay, retention, max_message_size, created_at,
       depth, visible, in_flight, delayed
  FROM courier.queues ORDER BY queue_name};

# Stored messages, read from the message tables (the superuser may):
# queue|msg_id|body|body_text|body_bytes|attributes|sent_at
sub stored_messages
{
	my ($db) = @_;
	my @parts;
	for my $q (split /\n/,
		$node->safe_psql($db, q{SELECT queue_id || ' ' || queue_name FROM courier.queue ORDER BY 1}))
	{
		my ($id, $name) = split / /, $q;
		push @parts,
		  qq{SELECT format('%s|%s|%s|%s|%s|%s|%s', '$name', msg_id, body, body_text,
		                   encode(body_bytes, 'hex'), attributes, sent_at) AS m, msg_id
		       FROM courier.q_$id};
	}
	return [
		split /\n/,
		$node->safe_psql($db,
			'SELECT m FROM (' . join(' UNION ALL ', @parts) . ') s ORDER BY msg_id')
	];
}

# Receive every receivable message of every queue with a one-hour lease.
# Returns the messages in the format of stored_messages, and how often each
# count of deliveries occurred ("1:10,2:4").
sub drain
{
	my ($db) = @_;
	my (@rows, %counts);
	for my $name (split /\n/,
		$node->safe_psql($db, q{SELECT queue_name FROM courier.queue ORDER BY 1}))
	{
		for my $row (split /\n/, $node->safe_psql($db, qq{
SELECT format('%s|%s|%s|%s|%s|%s|%s', '$name', msg_id, body, body_text,
              encode(body_bytes, 'hex'), attributes, sent_at) || ' ' || receive_count
  FROM courier.receive('$name', 1000, '1 hour') ORDER BY msg_id}))
		{
			my ($m, $count) = $row =~ /^(.*) (\d+)$/s;
			push @rows, $m;
			$counts{$count}++;
		}
	}
	return ([ sort { (split /\|/, $a)[1] <=> (split /\|/, $b)[1] } @rows ],
		join(',', map { "$_:$counts{$_}" } sort { $a <=> $b } keys %counts));
}

my $queues_before = $node->safe_psql($src, $queues_q);
like($queues_before, qr/^dq_orders\|00:02:00\|00:00:00\|2 days\|4096\|[^|]+\|16\|10\|3\|3$/m,
	'source dq_orders: settings and counts (16 stored, 10 visible, 3 in flight, 3 delayed)');
like($queues_before, qr/^dq_mail\|00:00:45\|00:10:00\|7 days\|100000\|[^|]+\|4\|3\|0\|1$/m,
	'source dq_mail: settings and counts');
like($queues_before, qr/^dq_plain\|00:00:30\|00:00:00\|4 days\|262144\|[^|]+\|3\|2\|1\|0$/m,
	'source dq_plain: default settings and counts');

my $messages_before = stored_messages($src);
is(scalar(@$messages_before), 23, 'the source stores 23 messages');
my %acked = map { $_ => 1 } split /\n/,
  $node->safe_psql($src, q{SELECT msg_id FROM acked});
is(scalar(keys %acked), 3, 'three messages were acked in the source');
my $last_id = $node->safe_psql($src, q{SELECT last_value FROM courier.msg_id_seq});
my $grants_q = q{
SELECT string_agg(format('%s|%s|%s', q.queue_name, g.grantee, g.privilege), E'\n'
                  ORDER BY q.queue_name, g.grantee::text, g.privilege)
  FROM courier.queue_grant g JOIN courier.queue q USING (queue_id)};
my $grants_before = $node->safe_psql($src, $grants_q);
like($grants_before, qr/^dq_orders\|regress_dump_app\|send$/m, 'source grant: send on dq_orders');
like($grants_before, qr/^dq_mail\|regress_dump_app\|receive$/m, 'source grant: receive on dq_mail');

my $tmp = PostgreSQL::Test::Utils::tempdir;
my @conn = ('-h', $node->host, '-p', $node->port);

# Run a client program; it must succeed without a word on stderr.
sub run_clean
{
	my ($name, @cmd) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '<', \undef, '>', \$out, '2>', \$err);
	my $ret = $? >> 8;
	is($ret, 0, "$name exits with 0");
	is($err, '', "$name writes nothing to stderr");
}

sub dump_and_restore
{
	my ($target, @dump_opts) = @_;
	my $file = "$tmp/$target.dump";
	run_clean(join(' ', 'pg_dump -Fc', @dump_opts), 'pg_dump', @conn, '-Fc', @dump_opts, '-f', $file, $src);
	$node->safe_psql('postgres', qq{CREATE DATABASE $target});
	run_clean("pg_restore into $target", 'pg_restore', @conn, '-d', $target, $file);
}

# --- full dump ------------------------------------------------------------

my $dst = 'courier_restored';
dump_and_restore($dst);

is($node->safe_psql($dst, q{SELECT extversion FROM pg_extension WHERE extname = 'pg_courier'}),
	'0.1', 'the restored database has the extension');
is($node->safe_psql($dst, $queues_q), $queues_before,
	'queues, settings, created_at and counts (visible, in flight, delayed) are those of the source');
is($node->safe_psql($dst, $grants_q), $grants_before, 'queue grants are those of the source');
is_deeply(stored_messages($dst), $messages_before,
	'the stored messages are those of the source (body, attributes, sent_at)');

# The in-flight messages' leases came along: their receipts still work.
is( $node->safe_psql($dst, q{
SELECT count(*) FROM receipts, LATERAL courier.change_visibility(queue_name, receipt, '0')}),
	'4', 'receipts issued in the source are accepted in the restored database');

# Let the delays and the release delay pass: move those timestamps back.
$node->safe_psql($dst, q{
DO $$
DECLARE
	qid integer;
BEGIN
	FOR qid IN SELECT queue_id FROM courier.queue LOOP
		EXECUTE format('UPDATE courier.q_%s SET visible_at = visible_at - interval ''1 day''', qid);
		EXECUTE format('UPDATE courier.l_%s SET invisible_until = invisible_until - interval ''1 day''', qid);
	END LOOP;
END $$;
});

my ($drained, $counts) = drain($dst);
is_deeply($drained, $messages_before,
	'every stored message is receivable exactly once, with its body, attributes and sent_at');
is($counts, '1:18,2:5',
	'receive_count carried: the 5 messages received in the source are on their second delivery');
my @acked_back = grep { $acked{ (split /\|/, $_)[1] } } @$drained;
is_deeply(\@acked_back, [], 'no acked message is in the restored database');
my $max_restored = 0;
for (@$drained)
{
	my $id = (split /\|/, $_)[1];
	$max_restored = $id if $id > $max_restored;
}
is( $node->safe_psql($dst, q{
SELECT string_agg(format('%s:%s', queue_name, in_flight), ' ' ORDER BY queue_name)
  FROM courier.queues}),
	'dq_mail:4 dq_orders:16 dq_plain:3',
	'after the drain every message is in flight');

# The id sequence was carried: a new id is larger than every id issued in
# the source, acked ones included.
my $new_id = $node->safe_psql($dst, q{SELECT courier.send('dq_plain', 'after restore')});
cmp_ok($new_id, '>', $max_restored, 'a new message id is larger than every restored id');
cmp_ok($new_id, '>', $last_id, 'a new message id is larger than every id issued in the source');

# The queue id sequence was carried: a new queue does not collide with the
# restored per-queue tables.
is( $node->safe_psql($dst, q{
DO $$ BEGIN PERFORM courier.create_queue('dq_new'); END $$;
SELECT courier.send('dq_new', 'first') > 0;
SELECT body_text FROM courier.receive('dq_new');}),
	"t\nfirst", 'a queue created after the restore works');

# The role can do exactly what it was granted.
sub as_app
{
	my ($db, $sql) = @_;
	my ($ret, $out, $err) = $node->psql($db, $sql,
		extra_params => [ '-U', 'regress_dump_app', '-v', 'VERBOSITY=terse' ]);
	return $ret == 0 ? "ok: $out" : "error: $err";
}
$node->safe_psql($dst, q{SELECT courier.send('dq_mail', 'for the app', delay => '0')});
is(as_app($dst, q{SELECT courier.send('dq_orders', 'from the app') > 0}),
	'ok: t', 'the role can send to the queue it was granted send on');
like(as_app($dst, q{SELECT courier.send('dq_mail', 'from the app')}),
	qr/^error: .*ERROR:  permission denied for queue "dq_mail"/,
	'the role cannot send to the queue it was granted receive on');
is(as_app($dst, q{SELECT body_text FROM courier.receive('dq_mail')}),
	'ok: for the app', 'the role can receive from the queue it was granted receive on');
like(as_app($dst, q{SELECT count(*) FROM courier.receive('dq_orders')}),
	qr/^error: .*ERROR:  permission denied for queue "dq_orders"/,
	'the role cannot receive from the queue it was granted send on');
like(as_app($dst, q{SELECT count(*) FROM courier.receive('dq_plain')}),
	qr/^error: .*ERROR:  permission denied for queue "dq_plain"/,
	'the role cannot receive from an ungranted queue');
is(as_app($dst, q{SELECT string_agg(queue_name, ',' ORDER BY queue_name) FROM courier.queues}),
	'ok: dq_mail,dq_orders', 'the role sees exactly its two queues in courier.queues');
my $orders_id = $node->safe_psql($dst,
	q{SELECT queue_id FROM courier.queue WHERE queue_name = 'dq_orders'});
like(as_app($dst, "SELECT count(*) FROM courier.q_$orders_id"),
	qr/^error: .*permission denied/, 'the role cannot read the message table');

# --- dump without unlogged table data -------------------------------------

my $dst2 = 'courier_restored_nolease';
dump_and_restore($dst2, '--no-unlogged-table-data');

is_deeply(stored_messages($dst2), $messages_before,
	'--no-unlogged-table-data: the stored messages are those of the source');
is($node->safe_psql($dst2, $grants_q), $grants_before,
	'--no-unlogged-table-data: queue grants are those of the source');
is( $node->safe_psql($dst2, q{
SELECT string_agg(format('%s:%s/%s/%s/%s', queue_name, depth, visible, in_flight, delayed), ' '
                  ORDER BY queue_name)
  FROM courier.queues}),
	'dq_mail:4/3/0/1 dq_orders:16/14/0/2 dq_plain:3/3/0/0',
	'--no-unlogged-table-data: no lease is left, only the messages sent with a delay are delayed');
my ($sret, $sout, $serr) = $node->psql($dst2, q{
SELECT courier.change_visibility(queue_name, receipt, '0') FROM receipts ORDER BY msg_id LIMIT 1},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($serr, qr/ERROR:  55000: /,
	'--no-unlogged-table-data: a receipt issued in the source is refused');
my @sent_delayed = grep { /delayed/ } @$messages_before;
is(scalar(@sent_delayed), 3, 'three messages were sent with a delay');
my %sent_delayed = map { $_ => 1 } @sent_delayed;
my ($drained2, $counts2) = drain($dst2);
is_deeply($drained2, [ grep { !$sent_delayed{$_} } @$messages_before ],
	'--no-unlogged-table-data: every message not sent with a delay is receivable at once, exactly once');
is($counts2, '1:20', '--no-unlogged-table-data: deliveries count from 1 again');
my $new_id2 = $node->safe_psql($dst2, q{SELECT courier.send('dq_plain', 'after restore')});
cmp_ok($new_id2, '>', $last_id,
	'--no-unlogged-table-data: a new message id is larger than every id issued in the source');

$node->stop;
done_testing();
