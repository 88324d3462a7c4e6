
# Long polling (doc/API.md, "Consuming": the wait argument of courier.receive)
# and the notify option of a queue ("Queues": NOTIFY courier_<queue_id> once
# per committing transaction that sent to it).
#
# isolationtester cannot see a backend sleep on its latch, so this test drives
# psql sessions itself.  A waiting receive is started in a session of its own;
# the test checks in pg_stat_activity that it sleeps (wait_event_type
# 'Extension'), then acts in another session and reads what the receive
# returned.
#
# No assertion is about speed.  A receive that must be woken asks for a wait
# of $long, twice the harness timeout: if the wake-up were lost it would still
# be sleeping when the harness gives up on it, and the test fails.  A receive
# that must not be woken asks for a few seconds and must return nothing.
#
# Nothing else may set a waiting backend's latch meanwhile, or a lost wake-up
# would go unnoticed.  Hence autovacuum is off (its catalog updates send
# invalidations, whose catch-up signal sets latches), and each waiting receive
# is the first statement of a new session: a backend that goes idle with
# statistics pending arms a timer that sets its latch about 10 seconds later,
# even while it is busy again.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

# Longer than any harness timeout below; within courier.max_wait (1 hour).
my $long = 2 * $PostgreSQL::Test::Utils::timeout_default;
$long = 3600 if $long > 3600;

my $node = PostgreSQL::Test::Cluster->new('long_poll');
$node->init;
$node->append_conf('postgresql.conf', qq{
log_statement = none
autovacuum = off
courier.max_wait = '1h'
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION pg_courier;
SELECT courier.create_queue(q)
  FROM unnest(ARRAY['lp_commit', 'lp_rollback', 'lp_empty', 'lp_delay', 'lp_lease', 'lp_release',
                    'lp_cancel']) AS q;
SELECT courier.create_queue(q, notify => true)
  FROM unnest(ARRAY['lp_n_multi', 'lp_n_rollback', 'lp_n_twice', 'lp_n_control']) AS q;
SELECT courier.create_queue('lp_n_off', notify => false);
SELECT courier.create_queue('lp_fifo', fifo => true);
});

# psql sessions that do not stop at an error: each statement is followed by
# its SQLSTATE, so expected errors can be checked like results.
my $nsession = 0;

sub session
{
	$nsession++;
	local $ENV{PGAPPNAME} = "long_poll_$nsession";
	my $s = $node->background_psql('postgres', on_error_stop => 0);
	$s->set_query_timer_restart;
	return ($s, "long_poll_$nsession");
}

my $marker = 0;

# Starts $sql in session $s without waiting for it to end; returns a handle
# for finish().
sub start
{
	my ($s, $sql) = @_;
	$marker++;
	my $seen = $s->query_until(qr/start-$marker\n/,
		"\\echo start-$marker\n$sql\n\\echo sqlstate=:SQLSTATE\n\\echo end-$marker\n");
	# a quick statement's output may have come in with the start marker
	$seen =~ s/^.*start-$marker\n//s;
	return [ $s, $marker, $seen ];
}

# Waits for a statement begun by start() to end; returns (output, SQLSTATE).
sub finish
{
	my ($h) = @_;
	my ($s, $m, $out) = @$h;
	$out .= $s->query_until(qr/end-$m\n/, '') unless $out =~ /end-$m\n/;
	$out =~ s/end-$m\n.*$//s;
	$out =~ s/sqlstate=(\w*)\n$//;
	my $sqlstate = $1;
	chomp $out;
	return ($out, $sqlstate);
}

# Runs $sql in session $s; returns (output, SQLSTATE).
sub run
{
	my ($s, $sql) = @_;
	return finish(start($s, $sql));
}

# True once the session's backend sleeps in a waiting receive; with $busy,
# once it runs a statement at all.
sub sleeping
{
	my ($app, $busy) = @_;
	my $cond = $busy ? q{state = 'active'} : q{wait_event_type = 'Extension'};
	return $node->poll_query_until('postgres',
		qq{SELECT $cond FROM pg_stat_activity WHERE application_name = '$app'});
}

sub receive_sql
{
	my ($queue, $wait, $vt) = @_;
	$vt = defined $vt ? "'$vt'" : 'NULL';
	return "SELECT body_text, receive_count FROM courier.receive('$queue', 1, $vt, '$wait');";
}

# Starts a receive of one message from $queue with wait $wait as the first
# statement of a new session; returns a handle for finish_waiter() once it
# sleeps.
sub start_waiter
{
	my ($queue, $wait, $vt, $what, $busy) = @_;
	my ($s, $app) = session();
	my $h = start($s, receive_sql($queue, $wait, $vt));
	ok(sleeping($app, $busy), "$what: the receive waits");
	return [ $h, $s, $app ];
}

sub finish_waiter
{
	my ($w) = @_;
	my ($h, $s) = @$w;
	my @r = finish($h);
	$s->quit;
	return @r;
}

my ($other) = session();
my ($opid) = run($other, 'SELECT pg_backend_pid();');
my ($out, $sqlstate, $w);

#
# 1. The commit of a send wakes a waiting receive; the send alone does not.
#
$w = start_waiter('lp_commit', "$long seconds", '1 hour', 'commit');
run($other, "BEGIN; SELECT courier.send('lp_commit', 'c1');");
ok(sleeping($w->[2]), 'commit: an uncommitted send leaves it waiting');
run($other, 'COMMIT;');
($out, $sqlstate) = finish_waiter($w);
is("$out/$sqlstate", 'c1|1/00000',
	'commit: the waiting receive returns the message once the send commits');

#
# 2. A rolled-back send does not end a wait.
#
{
	my ($s, $app) = session();
	my $h = start($s, receive_sql('lp_rollback', '5 seconds', '1 hour'));
	# sleeping, or (on a very slow machine) back already
	$node->poll_query_until('postgres',
		qq{SELECT wait_event_type = 'Extension' OR state = 'idle' FROM pg_stat_activity
		    WHERE application_name = '$app'})
	  or die 'the waiting receive neither sleeps nor returned';
	run($other,
		"BEGIN; SELECT courier.send('lp_rollback', 'rolled back'); ROLLBACK;");
	($out, $sqlstate) = finish($h);
	$s->quit;
	is("$out/$sqlstate", '/00000',
		'rollback: the waiting receive returns an empty set at the end of its wait');
}
# and a longer wait goes on past rollbacks, to the next committed send
$w = start_waiter('lp_rollback', "$long seconds", '1 hour', 'rollback');
run($other,
	"BEGIN; SELECT courier.send('lp_rollback', 'rolled back'); ROLLBACK;");
ok(sleeping($w->[2]), 'rollback: it is still waiting after another rolled-back send');
run($other, "SELECT courier.send('lp_rollback', 'committed');");
($out, $sqlstate) = finish_waiter($w);
is("$out/$sqlstate", 'committed|1/00000',
	'rollback: it returns the committed message, never a rolled-back one');

#
# 3. Nothing to receive: an empty set when the wait ends.
#
($out, $sqlstate) = run($other, receive_sql('lp_empty', '1 second'));
is("$out/$sqlstate", '/00000', 'empty: an empty set when the wait ends');

#
# 4. The end of a delay ends the wait.
#
$node->safe_psql('postgres',
	q{SELECT courier.send('lp_delay', 'd1', delay => '2 seconds')});
is($node->safe_psql('postgres',
		q{SELECT visible || '/' || delayed FROM courier.queues WHERE queue_name = 'lp_delay'}),
	'0/1', 'delay: the message is not visible yet');
$w = start_waiter('lp_delay', "$long seconds", '1 hour', 'delay');
($out, $sqlstate) = finish_waiter($w);
is("$out/$sqlstate", 'd1|1/00000',
	'delay: the waiting receive returns the delayed message when its delay ends');

#
# 5. The end of another session's lease ends the wait.
#
$node->safe_psql('postgres', q{SELECT courier.send('lp_lease', 'l1')});
($out, $sqlstate) = run($other, receive_sql('lp_lease', '0', '2 seconds'));
is("$out/$sqlstate", 'l1|1/00000', 'lease: another session holds the message for 2 seconds');
$w = start_waiter('lp_lease', "$long seconds", '1 hour', 'lease');
($out, $sqlstate) = finish_waiter($w);
is("$out/$sqlstate", 'l1|2/00000',
	'lease: the waiting receive returns the message when the lease expires');

#
# 6. A release, a lease cut short with change_visibility, and a receive that
#    rolls back each make a message visible, and end the wait.
#
$node->safe_psql('postgres', q{SELECT courier.send('lp_release', 'r1')});
run($other,
	q{SELECT receipt AS r1_receipt FROM courier.receive('lp_release', 1, '1 hour') \gset});
$w = start_waiter('lp_release', "$long seconds", '1 hour', 'release');
($out, $sqlstate) = run($other, q{SELECT courier.release('lp_release', :'r1_receipt');});
is($sqlstate, '00000', 'release: the other session releases the message');
($out, $sqlstate) = finish_waiter($w);
is("$out/$sqlstate", 'r1|2/00000', 'release: the waiting receive returns the released message');

# r1 is leased for an hour now; the other session takes r2 for an hour
$node->safe_psql('postgres', q{SELECT courier.send('lp_release', 'r2')});
($out, $sqlstate) = run($other,
	q{SELECT receipt AS r2_receipt FROM courier.receive('lp_release', 1, '1 hour') \gset});
is($sqlstate, '00000', 'change_visibility: the other session leases the new message');
$w = start_waiter('lp_release', "$long seconds", '1 hour', 'change_visibility');
($out, $sqlstate) = run($other,
	q{SELECT courier.change_visibility('lp_release', :'r2_receipt', '0');});
is($sqlstate, '00000', 'change_visibility: the other session ends its lease now');
($out, $sqlstate) = finish_waiter($w);
is("$out/$sqlstate", 'r2|2/00000',
	'change_visibility: the waiting receive returns the message whose lease was cut short');

# While the receiving transaction is open, the waiter finds the message
# locked and looks again every few milliseconds (so it need not be asleep
# when checked); the rollback makes the message visible.
$node->safe_psql('postgres', q{SELECT courier.send('lp_lease', 'l2')});
($out, $sqlstate) = run($other,
	q{BEGIN; SELECT body_text, receive_count FROM courier.receive('lp_lease', 1, '1 hour');});
is("$out/$sqlstate", 'l2|1/00000', 'rolled-back receive: the other session leases a message');
$w = start_waiter('lp_lease', "$long seconds", '1 hour', 'rolled-back receive', 1);
run($other, 'ROLLBACK;');
($out, $sqlstate) = finish_waiter($w);
is("$out/$sqlstate", 'l2|1/00000',
	'rolled-back receive: the waiting receive gets the message, as never delivered');

#
# 6b. On a FIFO queue, acknowledging the message a group has in flight lets
#     the group's next message go, and ends the wait.
#
$node->safe_psql('postgres', q{
SELECT courier.send('lp_fifo', 'f1', group_id => 'g');
SELECT courier.send('lp_fifo', 'f2', group_id => 'g');});
($out, $sqlstate) = run($other,
	q{SELECT receipt AS f1_receipt FROM courier.receive('lp_fifo', 1, '1 hour') \gset});
is($sqlstate, '00000', 'fifo: the other session leases the head of the group');
$w = start_waiter('lp_fifo', "$long seconds", '1 hour', 'fifo ack');
($out, $sqlstate) = run($other, q{SELECT courier.ack('lp_fifo', :'f1_receipt');});
is($sqlstate, '00000', 'fifo: the other session acknowledges it');
($out, $sqlstate) = finish_waiter($w);
is("$out/$sqlstate", 'f2|1/00000',
	'fifo: the waiting receive returns the next message of the group');

#
# 7. statement_timeout and pg_cancel_backend end a wait with 57014 and leave
#    no lock behind.
#
{
	my ($s, $app) = session();
	my ($pid) = run($s, 'SELECT pg_backend_pid();');
	($out, $sqlstate) = run($s,
		"SET statement_timeout = '1s'; " . receive_sql('lp_cancel', "$long seconds"));
	is($sqlstate, '57014', 'statement_timeout: ends the wait with 57014');
	run($s, 'RESET statement_timeout;');
	is($node->safe_psql('postgres', qq{SELECT count(*) FROM pg_locks WHERE pid = $pid}),
		'0', 'statement_timeout: the session holds no lock afterwards');

	run($s, 'BEGIN;');
	my $h = start($s, receive_sql('lp_cancel', "$long seconds"));
	ok(sleeping($app), 'pg_cancel_backend: a receive in a transaction block waits');
	is($node->safe_psql('postgres', qq{SELECT pg_cancel_backend($pid)}),
		't', 'pg_cancel_backend: the cancel is sent');
	($out, $sqlstate) = finish($h);
	is($sqlstate, '57014', 'pg_cancel_backend: ends the wait with 57014');
	is($node->safe_psql('postgres', qq{SELECT count(*) FROM pg_locks WHERE pid = $pid}),
		'0', 'pg_cancel_backend: no lock is left, though the transaction block is still open');
	($out, $sqlstate) = run($s, 'ROLLBACK;');
	is($sqlstate, '00000', 'pg_cancel_backend: the session rolls back');
	$s->quit;
}
# the cancelled waits are gone: a send wakes the next one as usual
$w = start_waiter('lp_cancel', "$long seconds", '1 hour', 'after the cancels');
$node->safe_psql('postgres', q{SELECT courier.send('lp_cancel', 'x1')});
($out, $sqlstate) = finish_waiter($w);
is("$out/$sqlstate", 'x1|1/00000', 'after the cancels: the next wait is woken as usual');

#
# 8. Refused waits: above courier.max_wait (22023), in REPEATABLE READ (0A000).
#
($out, $sqlstate) = run($other, receive_sql('lp_empty', '3601 seconds'));
is($sqlstate, '22023', 'a wait above courier.max_wait (1 hour) is refused with 22023');
($out, $sqlstate) = run($other,
	"SET courier.max_wait = '2s'; " . receive_sql('lp_empty', '3 seconds'));
is($sqlstate, '22023', 'a wait above a lowered courier.max_wait is refused with 22023');
run($other, 'RESET courier.max_wait;');
($out, $sqlstate) = run($other,
	'BEGIN ISOLATION LEVEL REPEATABLE READ; ' . receive_sql('lp_empty', '1 second'));
is($sqlstate, '0A000', 'a wait in REPEATABLE READ is refused with 0A000');
run($other, 'ROLLBACK;');

#
# 9. NOTIFY: once per committing transaction that sent to a queue with notify
#    on; never for a rollback or a queue with notify off.  Notifications reach
#    a listener in commit order, so once the control queue's notification is
#    in, every earlier one is too.
#
my %channel = map {
	$_ => $node->safe_psql('postgres',
		"SELECT notify_channel FROM courier.queues WHERE queue_name = '$_'")
} qw(lp_n_multi lp_n_rollback lp_n_twice lp_n_control lp_n_off);
my ($listener) = session();
run($listener, join('', map { qq{LISTEN "$channel{$_}";} } sort keys %channel));

# Polls the listener until the control channel's notification arrives; returns
# the notifications seen, as "channel:pid" strings.
sub notifications
{
	my $seen = '';
	for (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default)
	{
		my ($o) = run($listener, 'SELECT 1;');
		$seen .= "$o\n";
		last if $seen =~ /"$channel{lp_n_control}"/;
		usleep(100_000);
	}
	return [ map { /"(courier_\d+)".*PID (\d+)/ ? "$1:$2" : () } split /\n/, $seen ];
}

sub count_for
{
	my ($notes, $queue) = @_;
	return scalar grep { $_ eq "$channel{$queue}:$opid" } @$notes;
}

run($other, q{BEGIN;
SELECT courier.send('lp_n_multi', 'a');
SELECT courier.send('lp_n_multi', '{"b": 1}'::jsonb);
SELECT courier.send('lp_n_multi', '\x63'::bytea);
SELECT courier.send_batch('lp_n_multi', ARRAY['d', 'e']);
SELECT courier.send('lp_n_off', 'not announced');
COMMIT;});
run($other, q{BEGIN; SELECT courier.send('lp_n_rollback', 'r'); ROLLBACK;});
run($other, q{BEGIN; SELECT courier.send('lp_n_rollback', 'r'); SAVEPOINT s;
SELECT courier.send('lp_n_multi', 'in a rolled-back transaction'); ROLLBACK;});
run($other, q{SELECT courier.send('lp_n_twice', 'first');});
run($other, q{SELECT courier.send('lp_n_twice', 'second');});
run($other, q{SELECT courier.send('lp_n_off', 'not announced either');});
run($other, q{SELECT courier.send('lp_n_control', 'control');});
my $notes = notifications();
is(count_for($notes, 'lp_n_control'), 1, 'notify: the control notification arrives');
is(count_for($notes, 'lp_n_multi'), 1,
	'notify: five messages sent in one transaction give one notification');
is(count_for($notes, 'lp_n_rollback'), 0, 'notify: a rolled-back send gives none');
is(count_for($notes, 'lp_n_twice'), 2, 'notify: two transactions give two notifications');
is(count_for($notes, 'lp_n_off'), 0, 'notify: a queue with notify off gives none');
is(scalar(@$notes), 4, 'notify: no other notification arrives')
  or diag(explain $notes);

# switched on and off with alter_queue, seen by a session that cached the queue
$node->safe_psql('postgres', q{
SELECT courier.alter_queue('lp_n_off', notify => true);
SELECT courier.alter_queue('lp_n_multi', notify => false);});
run($other, q{SELECT courier.send('lp_n_off', 'announced now');});
run($other, q{SELECT courier.send('lp_n_multi', 'not announced any more');});
run($other, q{SELECT courier.send('lp_n_control', 'control');});
$notes = notifications();
is(count_for($notes, 'lp_n_off'), 1, 'notify: alter_queue notify => true takes effect');
is(count_for($notes, 'lp_n_multi'), 0, 'notify: alter_queue notify => false takes effect');
is(scalar(@$notes), 2, 'notify: nothing else arrives') or diag(explain $notes);

# only sending transactions notify (doc/API.md): receive, release,
# change_visibility and ack on a queue with notify on do not
run($other, q{SELECT receipt AS n_receipt FROM courier.receive('lp_n_twice', 1, '1 hour') \gset});
run($other, q{SELECT courier.release('lp_n_twice', :'n_receipt');});
run($other, q{SELECT courier.send('lp_n_control', 'control');});
$notes = notifications();
is(count_for($notes, 'lp_n_control'), 1, 'notify: the control notification arrives');
is(count_for($notes, 'lp_n_twice'), 0, 'notify: receive and release give no notification')
  or diag(explain $notes);
run($other, q{SELECT receipt AS n_receipt FROM courier.receive('lp_n_twice', 1, '1 hour') \gset});
run($other, q{SELECT courier.change_visibility('lp_n_twice', :'n_receipt', '2 hours');});
run($other, q{SELECT courier.ack('lp_n_twice', :'n_receipt');});
run($other, q{SELECT courier.send('lp_n_control', 'control');});
$notes = notifications();
is(count_for($notes, 'lp_n_control'), 1, 'notify: the control notification arrives');
is(count_for($notes, 'lp_n_twice'), 0,
	'notify: change_visibility (extending a lease) and ack give no notification')
  or diag(explain $notes);

#
# 10. A client that goes away ends its waiting receive at once (wait_sleep
#     watches the client's socket too), not when the wait is over.  The
#     receive asks for 60 seconds; its psql is killed (SIGKILL: no
#     Terminate message, the kernel just closes the socket), and the backend
#     must be gone within 30 seconds of the receive's start.  That bound only
#     tells "ended at the disconnect" from "ended with the wait"; it is not
#     about speed.
#
$node->safe_psql('postgres', q{SELECT courier.create_queue('lp_disconnect')});
{
	my $began = Time::HiRes::time();
	my ($s, $app) = session();
	start($s, receive_sql('lp_disconnect', '60 seconds'));
	ok(sleeping($app), 'disconnect: the receive waits');
	my $pid = $node->safe_psql('postgres',
		qq{SELECT pid FROM pg_stat_activity WHERE application_name = '$app'});
	$s->{run}->signal('KILL');
	$s->{run}->finish;
	ok( $node->poll_query_until('postgres',
			qq{SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid}),
		'disconnect: the backend of a killed client ends');
	my $took = Time::HiRes::time() - $began;
	cmp_ok($took, '<', 30,
		'disconnect: it ended at the disconnect, well before its 60-second wait was over')
	  or diag(sprintf('the backend ended %.1f seconds after the receive began', $took));
}

$_->quit for ($other, $listener);
$node->stop;
done_testing();
