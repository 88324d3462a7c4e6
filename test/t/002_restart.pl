
# A clean restart (fast shutdown, shutdown checkpoint) keeps everything:
# queues and their settings, grants, messages with their bodies and
# attributes, delayed messages, and in-flight leases with their receipts
# (the lease table is UNLOGGED, which a clean shutdown preserves).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('restart');
$node->init;
$node->append_conf('postgresql.conf', "log_statement = none\n");
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION pg_courier;
CREATE ROLE regress_restart_sender LOGIN;
SELECT courier.create_queue('rs_custom', visibility_timeout => '2 minutes', delay => '0',
                            retention => '3 days', max_message_size => 1000, notify => true);
SELECT courier.alter_queue('rs_custom', retention => '2 days');
SELECT courier.create_queue('rs_default');
-- 10 messages of every body type, with and without attributes
SELECT courier.send('rs_custom', format('text %s', g), jsonb_build_object('n', g)) FROM generate_series(1, 4) g;
SELECT courier.send('rs_custom', jsonb_build_object('n', g)) FROM generate_series(5, 7) g;
SELECT courier.send('rs_custom', convert_to(format('bytes %s', g), 'UTF8')) FROM generate_series(8, 10) g;
-- one delayed message
SELECT courier.send('rs_custom', 'delayed', delay => '10 minutes');
SELECT courier.send_batch('rs_default', ARRAY['d1', 'd2', 'd3']);
});

my ($gret, $gout, $gerr) = $node->psql('postgres',
	q{SELECT courier.grant('rs_custom', 'regress_restart_sender', 'send')});
is($gret, 0, 'grant send on a queue to a role') or diag($gerr);

# Three messages in flight, with one-hour leases; keep their receipts.
$node->safe_psql('postgres', q{
CREATE TABLE receipts AS
  SELECT msg_id, receipt, receive_count FROM courier.receive('rs_custom', 3, '1 hour');
});

my $settings_q = q{
SELECT queue_name, visibility_timeout, delay, retention, max_message_size, notify,
       notify_channel, created_at, depth, visible, in_flight, delayed
  FROM courier.queues ORDER BY queue_name};
my $messages_q = q{
SELECT string_agg(format('%s|%s|%s|%s|%s', body, body_text, encode(body_bytes, 'hex'),
                         attributes, sent_at), E'\n' ORDER BY msg_id)
  FROM courier.receive('rs_custom', 100, '0')};

my $settings_before = $node->safe_psql('postgres', $settings_q);
my $grants_q = q{SELECT string_agg(g::text, ';' ORDER BY g::text) FROM courier.queue_grant g};
my $grants_before = $node->safe_psql('postgres', $grants_q);
like($grants_before, qr/regress_restart_sender/, 'the grant is recorded in courier.queue_grant');

is( $node->safe_psql('postgres',
		q{SELECT depth || '/' || visible || '/' || in_flight || '/' || delayed
		    FROM courier.queues WHERE queue_name = 'rs_custom'}),
	'11/7/3/1',
	'before the restart: 11 messages, 7 visible, 3 in flight, 1 delayed');

$node->restart;

is($node->safe_psql('postgres', $settings_q),
	$settings_before, 'queue settings and counts survive a clean restart');
like($settings_before, qr/^rs_custom\|00:02:00\|00:00:00\|2 days\|1000\|t\|courier_\d+\|/m,
	'the custom settings, including the altered retention, are those that were set');
like($settings_before, qr/^rs_default\|00:00:30\|00:00:00\|4 days\|262144\|f\|courier_\d+\|/m,
	'the other queue has the default settings, notify off');
is($node->safe_psql('postgres', $grants_q),
	$grants_before, 'grants survive a clean restart');

# The leased messages stay invisible; the others come back unchanged.
my $visible = $node->safe_psql('postgres', $messages_q);
my @visible = split /\n/, $visible;
is(scalar(@visible), 7, 'the 7 unleased messages are receivable, the leased 3 are not');
like($visible, qr/^\|text 4\|\|\{"n": 4\}\|/m, 'a text body and its attributes are intact');
like($visible, qr/^\{"n": 7\}\|\|\|\|/m, 'a jsonb body is intact');
like($visible, qr/^\|\|6279746573203130\|\|/m, 'a bytea body is intact');
unlike($visible, qr/delayed/, 'the delayed message is still delayed');

# The old receipts still work: the leases survived with them.
is( $node->safe_psql('postgres', q{
SELECT count(*) FROM receipts, LATERAL courier.change_visibility('rs_custom', receipt, '1 hour')}),
	'3', 'change_visibility accepts the receipts issued before the restart');
is( $node->safe_psql('postgres',
		q{SELECT courier.ack_batch('rs_custom', array_agg(receipt)) FROM receipts}),
	'3', 'ack_batch accepts the receipts issued before the restart');
is( $node->safe_psql('postgres',
		q{SELECT depth || '/' || delayed FROM courier.queues WHERE queue_name = 'rs_custom'}),
	'8/1', 'after the acks: 7 received again with leases expiring at once, and the delayed one');

# The other queue is intact as well.
is( $node->safe_psql('postgres',
		q{SELECT string_agg(body_text, ',' ORDER BY msg_id) FROM courier.receive('rs_default', 10)}),
	'd1,d2,d3', 'the second queue kept its messages in order');

# The grant still works for a login of that role.
my ($ret, $out, $err) = $node->psql('postgres',
	q{SELECT courier.send('rs_custom', 'from the sender') > 0},
	extra_params => [ '-U', 'regress_restart_sender' ]);
is($ret, 0, 'the granted role can still send after the restart') or diag($err);

# New ids do not collide with the old ones.
is( $node->safe_psql('postgres', q{
SELECT courier.send('rs_default', 'new') > (SELECT max(msg_id) FROM receipts)}),
	't', 'new message ids are larger than the ones issued before the restart');

$node->stop;
done_testing();
