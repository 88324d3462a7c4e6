
# Crash durability of pg_courier (doc/API.md, "Storage").
#
# Several producers send, each message in its own transaction, some in
# transactions or savepoints that roll back, while one consumer receives and
# acks; the server is stopped in immediate mode (no shutdown checkpoint,
# crash recovery on the next start) in the middle of the stream.
#
# What the clients saw is the only evidence: a producer prints "ok <body>"
# only after its COMMIT returned, the consumer prints "acked <body>" only
# after its ack returned.  After the restart:
#   - every message whose commit a producer saw is there exactly once, unless
#     the consumer saw its ack commit;
#   - nothing from a rolled-back transaction or savepoint is there;
#   - nothing whose ack commit the consumer saw is there;
#   - no message is there twice, acknowledged or not;
#   - leases are forgotten (the lease table is UNLOGGED): messages received
#     but not acked before the crash are receivable again, in_flight is 0;
#   - new message ids are larger than every id issued before the crash.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use IPC::Run;
use Test::More;

my $n_producers = 4;
my $iterations  = 10000;    # per producer; far more than run before the crash
my $crash_at    = 800;      # stored messages before the server is stopped

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf('postgresql.conf', qq{
log_statement = none
synchronous_commit = on
max_connections = 20
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION pg_courier;
SELECT courier.create_queue('crash_q');
});

# Before the stream: 200 committed messages; 10 of them received with a
# one-hour lease (in flight across the crash), 5 received and acked.
$node->safe_psql('postgres', q{
SELECT courier.send('crash_q', format('seed-%s', g)) FROM generate_series(1, 200) g;
});
my $leased = $node->safe_psql('postgres', q{
SELECT string_agg(body_text, ',' ORDER BY msg_id)
  FROM courier.receive('crash_q', 10, '1 hour');
});
my @leased = split /,/, $leased;
is(scalar(@leased), 10, 'ten seed messages in flight before the crash');
my $acked_before = $node->safe_psql('postgres', q{
WITH r AS (SELECT * FROM courier.receive('crash_q', 5, '1 hour'))
SELECT string_agg(body_text, ',' ORDER BY msg_id)
  FROM r, LATERAL courier.ack('crash_q', r.receipt);
});
my @acked_before = split /,/, $acked_before;
is(scalar(@acked_before), 5, 'five seed messages acked before the crash');
is( $node->safe_psql('postgres',
		q{SELECT depth || '/' || in_flight FROM courier.queues WHERE queue_name = 'crash_q'}),
	'195/10',
	'queue state before the stream');

# Producer scripts.  Bodies are unique; "-rb" bodies are sent in
# transactions or savepoints that roll back.  Text, jsonb and bytea bodies
# and send_batch are all used, so every storage path is covered.
my $tmp = PostgreSQL::Test::Utils::tempdir;
my @producer_scripts;
for my $p (1 .. $n_producers)
{
	my $file = "$tmp/producer_$p.sql";
	open my $fh, '>', $file or die "cannot write $file: $!";
	print $fh "\\o /dev/null\n";
	for my $i (1 .. $iterations)
	{
		my $b = sprintf('p%d-%06d', $p, $i);
		my $m = $i % 10;
		if ($m == 3)
		{
			print $fh "BEGIN;\nSELECT courier.send('crash_q', '$b-rb');\nROLLBACK;\n";
		}
		elsif ($m == 5)
		{
			print $fh "BEGIN;\nSAVEPOINT s;\n"
			  . "SELECT courier.send('crash_q', '$b-rb');\n"
			  . "ROLLBACK TO SAVEPOINT s;\n"
			  . "SELECT courier.send('crash_q', '$b');\nCOMMIT;\n\\echo ok $b\n";
		}
		elsif ($m == 7)
		{
			print $fh "BEGIN;\n"
			  . "SELECT courier.send_batch('crash_q', ARRAY['$b-a', '$b-b', '$b-c']);\n"
			  . "COMMIT;\n\\echo ok $b-a\n\\echo ok $b-b\n\\echo ok $b-c\n";
		}
		elsif ($i % 3 == 0)
		{
			print $fh "BEGIN;\n"
			  . "SELECT courier.send('crash_q', jsonb_build_object('b', '$b'));\n"
			  . "COMMIT;\n\\echo ok $b\n";
		}
		elsif ($i % 3 == 1)
		{
			print $fh "BEGIN;\n"
			  . "SELECT courier.send('crash_q', convert_to('$b', 'UTF8'));\n"
			  . "COMMIT;\n\\echo ok $b\n";
		}
		else
		{
			print $fh "BEGIN;\nSELECT courier.send('crash_q', '$b'::text);\nCOMMIT;\n\\echo ok $b\n";
		}
	}
	close $fh;
	push @producer_scripts, $file;
}

# Consumer script: receive one, print it, ack it, print that.  185 seed
# messages are visible when it starts, so the queue never runs dry (an empty
# receive would stop it: \gset needs a row).
my $consumer_script = "$tmp/consumer.sql";
{
	open my $fh, '>', $consumer_script or die "cannot write $consumer_script: $!";
	for my $i (1 .. $iterations)
	{
		print $fh q{SELECT receipt AS r, coalesce(body_text, body->>'b', convert_from(body_bytes, 'UTF8')) AS b }
		  . q{FROM courier.receive('crash_q', 1, '1 hour') \gset} . "\n";
		print $fh "\\echo got :b\n";
		print $fh "SELECT courier.ack('crash_q', :'r') \\g /dev/null\n";
		print $fh "\\echo acked :b\n";
	}
	close $fh;
}

my $connstr = $node->connstr('postgres') . ' application_name=courier_client';
my (@handles, @outs, @errs);
for my $i (0 .. $#producer_scripts + 1)
{
	my $script = $i <= $#producer_scripts ? $producer_scripts[$i] : $consumer_script;
	my ($out, $err) = ('', '');
	push @outs, \$out;
	push @errs, \$err;
	push @handles,
	  IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $connstr, '-f', $script ],
		'<', \undef, '>', \$out, '2>', \$err);
}

ok( $node->poll_query_until('postgres',
		qq{SELECT depth >= $crash_at FROM courier.queues WHERE queue_name = 'crash_q'}),
	"producers stored $crash_at messages");

# Every client must still be connected: one that stopped early failed for
# another reason than the crash, and its output is no evidence.
is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE application_name = 'courier_client'}),
	scalar(@handles),
	'every client is still running when the server is stopped');

$node->stop('immediate');

for my $h (@handles) { $h->finish; }

my (%committed, %acked, %got);
my $last_got;
for my $i (0 .. $#outs)
{
	for my $line (split /\n/, ${ $outs[$i] })
	{
		if    ($line =~ /^ok (\S+)$/)    { $committed{$1} = 1; }
		elsif ($line =~ /^acked (\S+)$/) { $acked{$1}     = 1; }
		elsif ($line =~ /^got (\S+)$/)   { $got{$1}       = 1; $last_got = $1; }
	}
}
# The consumer's last message may have been acked on the server without the
# client hearing of it before the crash: its ack counts as in doubt.
my %ack_in_doubt;
$ack_in_doubt{$last_got} = 1 if defined $last_got && !$acked{$last_got};
# Every client must have died of the crash, not of an error of its own.
for my $i (0 .. $#errs)
{
	my $err = ${ $errs[$i] };
	unlike($err, qr/ERROR:|no rows returned/,
		"client $i saw no error of its own before the crash")
	  or diag($err);
}
note(sprintf('clients saw %d commits and %d acks before the crash',
		scalar(keys %committed), scalar(keys %acked)));
cmp_ok(scalar(keys %committed), '>=', $crash_at / 2, 'producers saw many commits');
cmp_ok(scalar(keys %acked), '>', 0, 'the consumer saw acks');

my $log_offset = -s $node->logfile;
$node->start;
ok($node->log_contains(qr/automatic recovery in progress/, $log_offset),
	'the restart went through crash recovery');

is( $node->safe_psql('postgres',
		q{SELECT in_flight FROM courier.queues WHERE queue_name = 'crash_q'}),
	'0', 'no lease survives the crash');

# Drain: every stored message, each with a fresh one-hour lease.
my %present;
my @dups;
my $max_id = 0;
for (;;)
{
	my $rows = $node->safe_psql('postgres', q{
SELECT msg_id || ' ' || coalesce(body_text, body->>'b', convert_from(body_bytes, 'UTF8'))
  FROM courier.receive('crash_q', 1000, '1 hour');
});
	last if $rows eq '';
	for my $row (split /\n/, $rows)
	{
		my ($id, $body) = split / /, $row, 2;
		push @dups, $body if $present{$body}++;
		$max_id = $id if $id > $max_id;
	}
}
is( $node->safe_psql('postgres',
		q{SELECT depth || '/' || visible FROM courier.queues WHERE queue_name = 'crash_q'}),
	scalar(keys %present) . '/0',
	'drain received every stored message');

is_deeply(\@dups, [], 'no message is stored twice');

my @lost = sort grep { !$present{$_} && !$acked{$_} && !$ack_in_doubt{$_} } keys %committed;
is_deeply(\@lost, [], 'every message whose commit a producer saw is still there')
  or diag(scalar(@lost) . ' lost, e.g. ' . join(' ', @lost[ 0 .. ($#lost < 9 ? $#lost : 9) ]));

my @rolled_back = sort grep { /-rb$/ } keys %present;
is_deeply(\@rolled_back, [], 'nothing from a rolled-back transaction or savepoint is there');

my @unknown = sort grep { !/^seed-\d+$/ && !/^p\d+-\d+(-[abc])?$/ } keys %present;
is_deeply(\@unknown, [], 'nothing but sent bodies is there');

my @resurrected = sort grep { $present{$_} } (keys %acked, @acked_before);
is_deeply(\@resurrected, [], 'no message whose ack committed came back');

my @leases_lost = sort grep { !$present{$_} } @leased;
is_deeply(\@leases_lost, [],
	'messages in flight before the crash are receivable again');

# What the consumer received but never saw acked is back as well (except
# possibly the one whose ack was in progress at the crash).
my @missing_unacked = sort grep { !$present{$_} && !$acked{$_} } keys %got;
cmp_ok(scalar(@missing_unacked), '<=', 1,
	'messages received but not acked by the consumer are receivable again')
  or diag(join ' ', @missing_unacked);

my $new_id = $node->safe_psql('postgres',
	q{SELECT courier.send('crash_q', 'after the crash')});
cmp_ok($new_id, '>', $max_id, 'ids issued after the crash are new');

$node->stop;
done_testing();
