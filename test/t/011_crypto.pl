
# Payload encryption: the key store (README, "Encryption").
#
# One cluster whose keyring file lies in a directory of its own.
#   - courier.keyring_file unset, a file with group or world access, a file
#     inside the data directory, a relative path, a file that is not a
#     keyring: clear errors, and no key is made;
#   - a configuration reload is seen by a session that already loaded the
#     keyring: replacing the master key makes receive fail with an error
#     naming the missing master key, and the message stays; with the old
#     master key back (second line) it decrypts again; rewrap_keys() wraps
#     every data key with the first master key, after which the old one can
#     go;
#   - neither the WAL nor pg_dump's output nor the server log (with
#     log_statement = all) holds the exported passphrase (as text or as the
#     raw key bytes) or an encrypted body in the clear, while a clear queue's
#     body is found in the WAL by the same search.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Digest::SHA qw(sha256_hex);

my $node = PostgreSQL::Test::Cluster->new('crypto');
$node->init;
$node->append_conf('postgresql.conf', qq{
log_statement = 'all'
wal_level = replica
});
$node->start;

my $keydir = PostgreSQL::Test::Utils::tempdir;
my $keyring = "$keydir/keyring";

sub random_key
{
	return join '', map { sprintf '%02x', int(rand(256)) } 1 .. 32;
}

sub write_keyring
{
	my ($path, $mode, @lines) = @_;
	open my $fh, '>', $path or die "could not write $path: $!";
	print $fh "# pg_courier master keys, first one wraps\n";
	print $fh "$_\n" for @lines;
	close $fh;
	chmod $mode, $path;
}

# the master key id the server shows for a key (sha-256 of label and key, 8 bytes)
sub master_id
{
	my ($hex) = @_;
	return substr(sha256_hex('pg_courier master key id' . pack('H*', $hex)), 0, 16);
}

sub set_keyring
{
	my ($path) = @_;
	# the last line of postgresql.conf wins
	$node->append_conf('postgresql.conf', "courier.keyring_file = '$path'\n");
	$node->reload;
	$node->poll_query_until('postgres',
		qq{SELECT current_setting('courier.keyring_file', true) = '$path'})
	  or die "reload not seen";
}

$node->safe_psql('postgres', q{
CREATE EXTENSION pg_courier;
CREATE FUNCTION err(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
});

sub err
{
	my ($sql) = @_;
	$sql =~ s/'/''/g;
	return $node->safe_psql('postgres', "SELECT err('$sql')");
}

# --- a keyring the server refuses
is(err(q{SELECT courier.create_key('k')}), '55000: courier.keyring_file is not set',
	'no keyring file set: refused');

my ($m1, $m2) = (random_key(), random_key());
write_keyring($keyring, 0644, $m1);
set_keyring($keyring);
is(err(q{SELECT courier.create_key('k')}),
	qq{F0000: keyring file "$keyring" has group or world access},
	'a keyring file readable by others is refused');
chmod 0640, $keyring;
like(err(q{SELECT courier.create_key('k')}), qr/has group or world access/,
	'a keyring file readable by the group is refused');

my $inside = $node->data_dir . '/keyring';
write_keyring($inside, 0600, $m1);
set_keyring($inside);
is(err(q{SELECT courier.create_key('k')}),
	qq{F0000: keyring file "$inside" must lie outside the data directory},
	'a keyring file in the data directory is refused');
unlink $inside;

set_keyring('relative/keyring');
is(err(q{SELECT courier.create_key('k')}), '55000: courier.keyring_file is not set',
	'a relative keyring path is refused when the module loads');

write_keyring($keyring, 0600, 'not a key');
set_keyring($keyring);
is(err(q{SELECT courier.create_key('k')}),
	qq{F0000: invalid master key on line 2 of keyring file "$keyring"},
	'a keyring file with a bad line is refused');
write_keyring($keyring, 0600);
is(err(q{SELECT courier.create_key('k')}),
	qq{F0000: keyring file "$keyring" holds no master key},
	'an empty keyring file is refused');
is($node->safe_psql('postgres', 'SELECT count(*) FROM courier.data_key'), '0',
	'no key was made meanwhile');

# --- a good keyring
write_keyring($keyring, 0600, $m1);
is(err(q{SELECT courier.create_key('k')}), 'ok', 'keyring file with mode 0600: key made');
$node->safe_psql('postgres', q{
SELECT courier.create_queue('enc', encryption_key => 'k');
SELECT courier.create_queue('clear');
SELECT courier.send('enc', 'SECRET-guest-Ada-4711'::text);
SELECT courier.send('clear', 'CLEARTEXT-guest-Bob-0815'::text);
});
is($node->safe_psql('postgres', 'SELECT master_key_id FROM courier.data_key'), master_id($m1),
	'the data key is wrapped with the master key of the file');

# A session that has loaded the keyring and the data key.
my $s = $node->background_psql('postgres');
is($s->query_safe(q{SELECT body_text FROM courier.receive('enc', 1, visibility_timeout => '0')}),
	'SECRET-guest-Ada-4711', 'a session decrypts with the keyring');

# --- another master key: the session sees the new keyring after the reload
write_keyring($keyring, 0600, $m2);
$node->reload;
my $seen = '';
my $wanted = qq{F0000: key "k" version 1 was wrapped with master key } . master_id($m1)
  . q{, which the keyring file does not hold};
foreach my $i (1 .. 100 * $PostgreSQL::Test::Utils::timeout_default)
{
	$seen = $s->query_safe(
		q{SELECT err($$SELECT count(*) FROM courier.receive('enc', 1, visibility_timeout => '0')$$)});
	last if $seen eq $wanted;
	select(undef, undef, undef, 0.01);
}
is($seen, $wanted, 'after a reload with another master key, receive names the missing one');
is($node->safe_psql('postgres', 'SELECT count(*) FROM courier.q_1'), '1', 'the message stays');
is(err(q{SELECT courier.create_key('k2')}), 'ok', 'new keys are wrapped with the new master key');

# --- both master keys: the old one unwraps, rewrap_keys moves everything to the first
write_keyring($keyring, 0600, $m2, $m1);
$node->reload;
foreach my $i (1 .. 100 * $PostgreSQL::Test::Utils::timeout_default)
{
	$seen = $s->query_safe(
		q{SELECT err($$SELECT count(*) FROM courier.receive('enc', 1, visibility_timeout => '0')$$)});
	last if $seen eq 'ok';
	select(undef, undef, undef, 0.01);
}
is($seen, 'ok', 'with the old master key on a second line, the session decrypts again');
is($s->query_safe(q{SELECT courier.rewrap_keys()}), '2', 'rewrap_keys rewraps both data keys');
is( $node->safe_psql('postgres',
		'SELECT string_agg(DISTINCT master_key_id, \',\') FROM courier.data_key'),
	master_id($m2),
	'every data key is now wrapped with the first master key');
write_keyring($keyring, 0600, $m2);
$node->reload;
foreach my $i (1 .. 100 * $PostgreSQL::Test::Utils::timeout_default)
{
	# a new backend always reads the file afresh
	$seen = $node->safe_psql('postgres',
		q{SELECT body_text FROM courier.receive('enc', 1, visibility_timeout => '0')});
	last if $seen eq 'SECRET-guest-Ada-4711';
	select(undef, undef, undef, 0.01);
}
is($seen, 'SECRET-guest-Ada-4711', 'the old master key is no longer needed');
$s->quit;

# --- nothing in the clear in WAL, dump, log
my $pass = $node->safe_psql('postgres', q{SELECT courier.export_key('k', 1)});
like($pass, qr/^[0-9a-f]{64}$/, 'export_key gives the passphrase');
my $raw = pack('H*', $pass);
$node->safe_psql('postgres', 'CHECKPOINT; SELECT pg_switch_wal()');

my $wal = '';
my $waldir = $node->data_dir . '/pg_wal';
opendir my $dh, $waldir or die "could not open $waldir: $!";
foreach my $f (sort grep { /^[0-9A-F]{24}$/ } readdir $dh)
{
	$wal .= slurp_file("$waldir/$f");
}
closedir $dh;
ok(length($wal) > 0, 'read the WAL segments');
ok(index($wal, 'CLEARTEXT-guest-Bob-0815') >= 0, 'a clear body is found in the WAL');
ok(index($wal, 'SECRET-guest-Ada-4711') < 0, 'an encrypted body is not in the WAL');
ok(index($wal, $pass) < 0, 'the passphrase is not in the WAL');
ok(index($wal, $raw) < 0, 'the raw data key is not in the WAL');

my ($stdout, $stderr);
IPC::Run::run([ 'pg_dump', '-d', $node->connstr('postgres') ], '>', \$stdout, '2>', \$stderr)
  or die "pg_dump failed: $stderr";
like($stdout, qr/COPY courier\.data_key /, 'pg_dump carries the wrapped keys');
ok(index($stdout, 'CLEARTEXT-guest-Bob-0815') >= 0, 'a clear body is in the dump');
ok(index($stdout, 'SECRET-guest-Ada-4711') < 0, 'an encrypted body is not in the dump');
ok(index($stdout, $pass) < 0, 'the passphrase is not in the dump');
ok(index($stdout, $raw) < 0, 'the raw data key is not in the dump');

my $log = slurp_file($node->logfile);
like($log, qr/courier\.export_key/, 'the log has the statements (log_statement = all)');
ok(index($log, $pass) < 0, 'the passphrase is not in the server log');
ok(index($log, $m1) < 0 && index($log, $m2) < 0, 'no master key is in the server log');

$node->stop;
done_testing();
