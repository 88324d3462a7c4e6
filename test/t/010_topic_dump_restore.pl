
# pg_dump / pg_restore carries topics (README, "Backup and restore"): topics
# (standard and FIFO), their grants, subscriptions with their filter policies,
# and the publish id sequence.
#
# Database courier_src holds two topics, three subscriptions (one with an
# attribute policy, one raw with a body policy, one on a FIFO topic), a role
# granted publish, and messages already delivered.  After pg_dump -Fc and
# pg_restore into a fresh database:
#   - courier.topics and courier.subscriptions show the same rows;
#   - the delivered messages are there;
#   - the role can publish, and a publish reaches exactly the subscriptions
#     whose restored policy matches (so the policies compile and match again);
#   - the new publish id is larger than every one issued in the source, and a
#     new subscription can be made (both sequences were carried);
#   - dropping a subscribed queue in the restored database still drops its
#     subscriptions (the trigger came back with the extension).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('topic_dump');
$node->init;
$node->start;

my $src = 'courier_src';
$node->safe_psql('postgres', qq{CREATE DATABASE $src});
$node->safe_psql($src, q{
CREATE EXTENSION pg_courier;
CREATE ROLE regress_topic_dump_app LOGIN;
SELECT courier.create_topic('td_bookings');
SELECT courier.create_topic('td_fifo', fifo => true);
SELECT courier.create_queue('td_email');
SELECT courier.create_queue('td_partner');
SELECT courier.create_queue('td_ordered', fifo => true);
SELECT courier.subscribe('td_bookings', 'td_email', '{"event": ["booking.created"]}');
SELECT courier.subscribe('td_bookings', 'td_partner', '{"guest": {"country": ["DE"]}}',
                         raw => true, filter_scope => 'body');
SELECT courier.subscribe('td_fifo', 'td_ordered', raw => true);
SELECT courier.grant_topic('td_bookings', 'regress_topic_dump_app', 'publish');
SELECT courier.publish('td_bookings', '{"guest": {"country": "DE"}}'::jsonb,
                       '{"event": "booking.created"}');
SELECT courier.publish('td_fifo', 'first'::text, group_id => 'g1');
});

my $topics_sql = q{SELECT string_agg(topic_name || ':' || fifo || ':' || subscriptions, ',' ORDER BY topic_name)
                     FROM courier.topics};
my $subs_sql = q{SELECT string_agg(format('%s/%s/%s/%s/%s', topic_name, queue_name, filter_policy,
                                          filter_scope, raw), ',' ORDER BY subscription_id)
                   FROM courier.subscriptions};
my $depth_sql = q{SELECT string_agg(queue_name || '=' || depth, ',' ORDER BY queue_name) FROM courier.queues};
my $max_pub = $node->safe_psql($src, q{SELECT last_value FROM courier.publish_id_seq});
my %before = (
	topics => $node->safe_psql($src, $topics_sql),
	subs => $node->safe_psql($src, $subs_sql),
	depth => $node->safe_psql($src, $depth_sql));

my $dump = $node->basedir . '/topics.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr($src) ], 'pg_dump');
$node->safe_psql('postgres', q{CREATE DATABASE courier_dst});
$node->command_ok([ 'pg_restore', '-d', $node->connstr('courier_dst'), $dump ], 'pg_restore');

my $dst = 'courier_dst';
is($node->safe_psql($dst, $topics_sql), $before{topics}, 'topics restored');
is($node->safe_psql($dst, $subs_sql), $before{subs}, 'subscriptions and policies restored');
is($node->safe_psql($dst, $depth_sql), $before{depth}, 'delivered messages restored');

# the role publishes; the restored policies decide who gets it
my $pub = $node->safe_psql($dst, q{
SET ROLE regress_topic_dump_app;
SELECT courier.publish('td_bookings', '{"guest": {"country": "FR"}}'::jsonb,
                       '{"event": "booking.created"}');
});
ok($pub > $max_pub, "new publish id $pub is above the source's $max_pub");
is($node->safe_psql($dst, $depth_sql), 'td_email=2,td_ordered=1,td_partner=1',
	'the publish reached the matching subscription only');
is($node->safe_psql($dst, q{
SELECT courier.publish('td_fifo', 'second'::text, group_id => 'g1') > 0;
SELECT string_agg(body_text, ',' ORDER BY msg_id) FROM courier.receive('td_ordered', 10);
}), "t\nfirst,second", 'the FIFO topic delivers in order after the restore');

# a new subscription gets a new id; dropping a queue drops its subscriptions
$node->safe_psql($dst, q{SELECT courier.create_queue('td_new')});
is($node->safe_psql($dst, q{SELECT courier.subscribe('td_bookings', 'td_new')}), '4',
	'a new subscription gets the next id');
my ($ret, $stdout, $stderr) = $node->psql($dst, q{SELECT courier.drop_queue('td_partner')});
is($ret, 0, 'drop_queue of a subscribed queue');
like($stderr, qr/drop cascades to subscription 2 of topic "td_bookings"/, 'with its NOTICE');
is($node->safe_psql($dst, q{SELECT count(*) FROM courier.subscriptions WHERE queue_name = 'td_partner'}),
	'0', 'and its subscription is gone');

$node->stop;
done_testing();
