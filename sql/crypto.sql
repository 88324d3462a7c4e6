--
-- crypto: payload encryption at rest (issue 8): keys made and rotated inside
-- the server and stored wrapped, queues with encryption_key, what is stored,
-- what receive returns, interop with pgcrypto both ways over its option
-- matrix and the payload sizes around a 16 KiB chunk, ASCII armor, tamper
-- detection with one uniform error, messages that cannot be decrypted (kept,
-- leased, dead-lettered only by a redrive policy), retiring key versions,
-- privileges, and every bad input.
--
-- Runs in a database of its own, so that message ids (named in warnings)
-- do not depend on the tests before it.  The cluster's keyring file is made
-- by test/run.sh; keyring reloads, file permissions, WAL and pg_dump are in
-- test/t/007_crypto.pl.
--
\set VERBOSITY terse
\set SHOW_CONTEXT never
SELECT current_database() AS regress_db \gset
CREATE DATABASE regress_crypto;
\c regress_crypto
\set VERBOSITY terse
\set SHOW_CONTEXT never
CREATE EXTENSION pg_courier;
CREATE EXTENSION pgcrypto;
\i sql/include/sqlstate_of.sql

-- the error a statement fails with: SQLSTATE and message
CREATE FUNCTION pg_temp.error_of(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

--
-- Keys
--
SELECT courier.create_key('guests');
SELECT courier.create_key('guests');
SELECT courier.create_key('bad name');
SELECT courier.create_key('');
SELECT courier.create_key(NULL);
SELECT courier.rotate_key('nosuch');
SELECT courier.export_key('guests', 2);
SELECT courier.export_key('nosuch', 1);
SELECT courier.export_key('guests', NULL);
-- a data key is 32 random bytes; its passphrase is their hex; the table holds it only wrapped
SELECT courier.export_key('guests', 1) ~ '^[0-9a-f]{64}$' AS hex_passphrase;
SELECT key_name, version, length(wrapped) AS wrapped_bytes,
       position(decode(courier.export_key('guests', 1), 'hex') IN wrapped) AS key_in_clear,
       length(master_key_id) AS master_id_digits
  FROM courier.data_key;

--
-- Queues with a key
--
SELECT courier.create_queue('enc', encryption_key => 'nosuch');
SELECT courier.create_queue('enc', encryption_key => 'guests');
SELECT courier.create_queue('plain');
SELECT queue_name, encryption_key FROM courier.queues ORDER BY queue_name;
SELECT queue_id AS enc FROM courier.queue WHERE queue_name = 'enc' \gset

SELECT courier.send('enc', '{"guest": "Ada Lovelace", "room": 12}'::jsonb, '{"kind": "booking"}');
SELECT courier.send('enc', 'card 4111 1111 1111 1111'::text);
SELECT courier.send('enc', '\xdeadbeef00ff'::bytea, delay => '0');
SELECT courier.send_batch('enc', ARRAY['batch one', 'batch two']);
SELECT courier.send_batch('enc', ARRAY['{"n": 1}', '{"n": 2}']::jsonb[]);

-- stored: ciphertext in body_bytes, nothing in the clear but attributes, ids, times, key, type
SELECT msg_id, body IS NULL AS no_jsonb, body_text IS NULL AS no_text,
       get_byte(body_bytes, 0) = 195 AS starts_with_tag3,
       position('Ada' IN encode(body_bytes, 'escape')) = 0
         AND position('4111' IN encode(body_bytes, 'escape')) = 0
         AND position('\xdeadbeef'::bytea IN body_bytes) = 0
         AND position('batch' IN encode(body_bytes, 'escape')) = 0 AS opaque,
       attributes, k.key_name, k.version, m.body_type
  FROM courier.q_:enc m JOIN courier.data_key k USING (key_id) ORDER BY msg_id;

-- receive returns each body decrypted, in the column of its type
SELECT msg_id, body, body_text, body_bytes, attributes, receive_count
  FROM courier.receive('enc', 10) ORDER BY msg_id;

-- pgcrypto reads what is stored, with the exported passphrase (bytea; text and jsonb as text)
SELECT msg_id, pgp_sym_decrypt_bytea(body_bytes, courier.export_key('guests', 1)) AS bytes
  FROM courier.q_:enc WHERE body_type = 'b';
SELECT msg_id, body_type, pgp_sym_decrypt(body_bytes, courier.export_key('guests', 1)) AS text
  FROM courier.q_:enc WHERE body_type <> 'b' ORDER BY msg_id;
-- a fresh salt for every message: no two stored headers are equal
SELECT count(DISTINCT substr(body_bytes, 1, 15)) = count(*) AS fresh_salts FROM courier.q_:enc;

--
-- Interop with pgcrypto over its option matrix and the sizes around a 16 KiB chunk
-- (16331 bytes: the encrypted packet's body is exactly one chunk in the queue's format;
-- 16378: the literal packet's body is)
--
CREATE TEMP TABLE matrix AS
SELECT c || ', ' || s || ', ' || d || ', ' || k AS options
  FROM unnest(ARRAY['cipher-algo=aes128', 'cipher-algo=aes192', 'cipher-algo=aes256']) c,
       unnest(ARRAY['s2k-mode=0', 's2k-mode=1', 's2k-mode=3']) s,
       unnest(ARRAY['s2k-digest-algo=sha1', 's2k-digest-algo=sha256']) d,
       unnest(ARRAY['sess-key=0', 'sess-key=1']) k;
CREATE TEMP TABLE payload AS
SELECT n, substr(convert_to(repeat(md5(n::text), n / 32 + 1), 'UTF8'), 1, n) AS data
  FROM unnest(ARRAY[0, 1, 16331, 16378, 16383, 16384, 16385, 1048576]) n;
SELECT count(*) AS cases FROM matrix, payload;
-- pgcrypto's defaults (AES-128, S2K mode 3, SHA-1) and each combination: courier decrypts
SELECT n, courier.decrypt(pgp_sym_encrypt_bytea(data, courier.export_key('guests', 1)),
                          'guests', 1) = data AS default_options
  FROM payload ORDER BY n;
SELECT options, n FROM matrix, payload
 WHERE courier.decrypt(pgp_sym_encrypt_bytea(data, courier.export_key('guests', 1), options),
                       'guests', 1) IS DISTINCT FROM data;
-- courier encrypts with each combination: pgcrypto decrypts
SELECT options, n FROM matrix, payload
 WHERE pgp_sym_decrypt_bytea(courier.encrypt(data, 'guests', options),
                             courier.export_key('guests', 1)) IS DISTINCT FROM data;
-- and the queue's own format (AES-256, S2K mode 1, SHA-256), at every size
SELECT n, pgp_sym_decrypt_bytea(courier.encrypt(data, 'guests'),
                                courier.export_key('guests', 1)) = data AS machine_format
  FROM payload ORDER BY n;
-- what pgcrypto wrote, put into a queue: receive decrypts it
INSERT INTO courier.q_:enc (sent_at, visible_at, body_bytes, key_id, body_type)
SELECT now(), now(), pgp_sym_encrypt_bytea(data, courier.export_key('guests', 1),
                                           'cipher-algo=aes192, s2k-mode=1, sess-key=1'),
       1, 'b'
  FROM payload WHERE n IN (16385, 1048576);
INSERT INTO courier.q_:enc (sent_at, visible_at, body_bytes, key_id, body_type)
VALUES (now(), now(), pgp_sym_encrypt('{"from": "pgcrypto"}', courier.export_key('guests', 1)),
        1, 'j');
SELECT r.msg_id, p.n AS size, r.body, r.body_bytes = p.data AS same
  FROM courier.receive('enc', 10) r LEFT JOIN payload p ON p.data = r.body_bytes
 ORDER BY r.msg_id;

-- options: pgcrypto's syntax, bad ones refused
SELECT courier.encrypt('x', 'guests', 'cipher-algo=bf');
SELECT courier.encrypt('x', 'guests', 's2k-mode=2');
SELECT courier.encrypt('x', 'guests', 's2k-count=10');
SELECT courier.encrypt('x', 'guests', 'compress-algo=1');
SELECT courier.encrypt('x', 'guests', 'armor=1');
SELECT courier.encrypt('x', 'guests', 'sess-key');
SELECT courier.encrypt('x', 'nosuch');
SELECT courier.encrypt(NULL, 'guests');
SELECT pgp_sym_decrypt_bytea(courier.encrypt('counted', 'guests', 's2k-mode=3, s2k-count=1000000'),
                             courier.export_key('guests', 1));

--
-- ASCII armor: pgcrypto's armor() writes the same, its dearmor() reads it
--
SELECT e.key_name, e.key_version, e.body_type,
       e.armored = armor(e.ciphertext) AS same_as_pgcrypto,
       dearmor(e.armored) = m.body_bytes AS dearmors_to_stored,
       pgp_sym_decrypt(dearmor(e.armored), courier.export_key('guests', 1)) AS text,
       e.armored LIKE E'-----BEGIN PGP MESSAGE-----\n\n%\n-----END PGP MESSAGE-----\n' AS framed
  FROM courier.export_message('enc', 2) e, courier.q_:enc m WHERE m.msg_id = 2;
SELECT count(*) AS sizes_armored_alike FROM payload
 WHERE (SELECT armor(c) = e FROM (SELECT courier.encrypt(data, 'guests') c) x,
        LATERAL (SELECT armor(x.c) e) y);
SELECT * FROM courier.export_message('plain', 1);
SELECT * FROM courier.export_message('enc', 999);
SELECT courier.send('plain', 'clear'::text) AS clear_id \gset
SELECT * FROM courier.export_message('plain', :clear_id);

--
-- Tampering: every single-bit flip of a ciphertext gives the one error, never data
--
-- the outcome of decrypting c with every step-th bit flipped, one at a time
CREATE FUNCTION pg_temp.flip_bits(c bytea, step integer)
RETURNS TABLE (flipped integer, outcome text) LANGUAGE plpgsql AS $$
BEGIN
	FOR flipped IN SELECT generate_series(0, length(c) * 8 - 1, step) LOOP
		outcome := pg_temp.error_of(format('SELECT courier.decrypt(%L, %L, 1)',
										   set_bit(c, flipped, 1 - get_bit(c, flipped)), 'guests'));
		RETURN NEXT;
	END LOOP;
END $$;
SELECT outcome, count(*) > 500 AS many
  FROM pg_temp.flip_bits(courier.encrypt(convert_to('a guest''s card token 4111', 'UTF8'),
                                         'guests', 's2k-mode=1, sess-key=1'), 1)
 GROUP BY outcome;
-- the same over a message of two chunks: every 29th bit, chunk headers included
SELECT outcome, count(*) > 4000 AS many
  FROM pg_temp.flip_bits(courier.encrypt(convert_to(repeat('x', 16385), 'UTF8'), 'guests'), 29)
 GROUP BY outcome;
-- truncated, extended, empty, not OpenPGP at all, no integrity check (tag 9)
SELECT pg_temp.error_of(format('SELECT courier.decrypt(%L, %L, 1)', x, 'guests'))
  FROM (VALUES (substr(courier.encrypt('abc', 'guests'), 1, 40)),
               (courier.encrypt('abc', 'guests') || '\x00'::bytea),
               (''::bytea), ('\x0102030405'::bytea),
               (pgp_sym_encrypt_bytea('abc', courier.export_key('guests', 1), 'disable-mdc=1')),
               (pgp_sym_encrypt_bytea('abc', courier.export_key('guests', 1), 'compress-algo=1'))) v(x);

--
-- Messages that cannot be decrypted are kept: skipped with a warning, left
-- leased, counted; a redrive policy moves them like any message
--
SELECT courier.create_queue('enc_dlq');
SELECT courier.create_queue('enc2', encryption_key => 'guests');
SELECT queue_id AS dlq FROM courier.queue WHERE queue_name = 'enc_dlq' \gset
SELECT queue_id AS enc2 FROM courier.queue WHERE queue_name = 'enc2' \gset
SELECT courier.send('enc2', 'good one'::text);
SELECT courier.send('enc2', 'to be tampered'::text) AS tampered \gset
SELECT courier.send('enc2', 'unknown key version'::text) AS unknown \gset
SELECT courier.send('enc2', 'good two'::text);
UPDATE courier.q_:enc2 SET body_bytes = set_bit(body_bytes, 300, 1 - get_bit(body_bytes, 300))
 WHERE msg_id = :tampered;
UPDATE courier.q_:enc2 SET key_id = 999 WHERE msg_id = :unknown;
SELECT msg_id, body_text FROM courier.receive('enc2', 10, visibility_timeout => '0');
SELECT msg_id, receive_count FROM courier.l_:enc2 ORDER BY msg_id;
SELECT count(*) AS kept FROM courier.q_:enc2;
-- again: still there, counted again (the good ones are acknowledged this time)
SELECT msg_id, body_text, courier.ack('enc2', receipt)
  FROM courier.receive('enc2', 10, visibility_timeout => '0');
SELECT msg_id, receive_count FROM courier.l_:enc2 WHERE msg_id IN (:tampered, :unknown) ORDER BY msg_id;
-- with a redrive policy, max_receives moves them to the dead-letter queue, still encrypted
SELECT courier.alter_queue('enc2', dead_letter_queue => 'enc_dlq', max_receives => 2);
SELECT msg_id, body_text FROM courier.receive('enc2', 10, visibility_timeout => '0');
SELECT msg_id, key_id, body_type, body_text IS NULL AS still_sealed,
       dead_letter->>'queue' AS from_queue
  FROM courier.q_:dlq ORDER BY msg_id;
SELECT msg_id FROM courier.q_:enc2 ORDER BY msg_id;
-- the key version comes back: the dead letter decrypts where it is
UPDATE courier.q_:dlq SET key_id = 1 WHERE msg_id = :unknown;
SELECT msg_id, body_text FROM courier.receive('enc_dlq', 10, visibility_timeout => '0');

--
-- Rotation: new messages use the new version, old ones stay readable; a
-- version is retired only when no message uses it
--
SELECT courier.purge_queue('enc');
SELECT courier.send('enc', 'before rotation'::text);
SELECT courier.rotate_key('guests');
SELECT courier.send('enc', 'after rotation'::text);
SELECT m.msg_id, k.version FROM courier.q_:enc m JOIN courier.data_key k USING (key_id)
 ORDER BY m.msg_id;
SELECT key_name, version, current, messages, queues FROM courier.keys ORDER BY version;
SELECT courier.retire_key('guests', 1);
SELECT courier.retire_key('guests', 2);
SELECT courier.retire_key('guests');
SELECT courier.retire_key('guests', 7);
SELECT courier.retire_key('nosuch');
SELECT courier.retire_key(NULL);
-- the old one, received and acknowledged
SELECT courier.ack('enc', receipt), body_text FROM courier.receive('enc', 10);
SELECT courier.purge_queue('enc_dlq');
SELECT courier.purge_queue('enc2');
SELECT courier.retire_key('guests', 1);
SELECT key_name, version, current, messages FROM courier.keys ORDER BY version;
SELECT courier.export_key('guests', 1);
-- wrong key: a passphrase of another version
SELECT pg_temp.error_of(format('SELECT courier.decrypt(%L, %L, 2)',
                               pgp_sym_encrypt_bytea('x', 'not the key'), 'guests'));

-- a queue loses its key: new messages are stored in the clear, old ones still decrypt
SELECT courier.alter_queue('enc', encryption_key => '');
SELECT courier.send('enc', 'clear again'::text);
SELECT msg_id, key_id IS NOT NULL AS encrypted, body_text FROM courier.q_:enc ORDER BY msg_id;
SELECT msg_id, body_text FROM courier.receive('enc', 10, visibility_timeout => '0') ORDER BY msg_id;
SELECT courier.alter_queue('enc', encryption_key => 'nosuch');
SELECT courier.alter_queue('enc', encryption_key => 'guests');
SELECT queue_name, encryption_key FROM courier.queues ORDER BY queue_name;
SELECT courier.retire_key('guests');

--
-- Privileges: receive decrypts for those who may receive; keys only for superusers
--
CREATE ROLE regress_crypto_app;
CREATE ROLE regress_crypto_sender;
SELECT courier.grant('enc', 'regress_crypto_app', 'receive');
SELECT courier.grant('enc', 'regress_crypto_sender', 'send');
SELECT courier.send('enc', 'for the app'::text);
SET ROLE regress_crypto_sender;
SELECT courier.send('enc', 'from the sender'::text) > 0 AS sent;
SELECT count(*) FROM courier.receive('enc', 10);
SELECT courier.export_key('guests', 2);
SELECT courier.create_key('mine');
RESET ROLE;
SET ROLE regress_crypto_app;
SELECT body_text FROM courier.receive('enc', 10) ORDER BY msg_id;
SELECT courier.export_key('guests', 2);
SELECT courier.decrypt('\x00', 'guests', 2);
SELECT * FROM courier.export_message('enc', 1);
SELECT count(*) FROM courier.data_key;
SELECT count(*) FROM courier.keys;
RESET ROLE;
-- a queue admin may export a message's ciphertext (no key)
CREATE ROLE regress_crypto_admin;
SELECT courier.grant('enc', 'regress_crypto_admin', 'admin');
SELECT msg_id AS app_msg FROM courier.q_:enc WHERE key_id IS NOT NULL ORDER BY msg_id LIMIT 1 \gset
SET ROLE regress_crypto_admin;
SELECT key_name, key_version, body_type, armored LIKE '-----BEGIN PGP MESSAGE-----%' AS armored
  FROM courier.export_message('enc', :app_msg);
SELECT courier.export_key('guests', 2);
RESET ROLE;
-- EXECUTE granted by mistake does not release keys
GRANT EXECUTE ON FUNCTION courier.export_key(text, integer), courier.decrypt(bytea, text, integer)
	TO regress_crypto_app;
SET ROLE regress_crypto_app;
SELECT courier.export_key('guests', 2);
SELECT courier.decrypt('\x00', 'guests', 2);
RESET ROLE;
SELECT courier.rewrap_keys();

-- the extension dropped and made again in this session: the new key 1 is a new key
SELECT courier.export_key('guests', 2) AS old_passphrase \gset
DROP EXTENSION pg_courier CASCADE;
CREATE EXTENSION pg_courier;
SELECT courier.create_key('guests');
SELECT courier.rotate_key('guests');
SELECT courier.export_key('guests', 2) <> :'old_passphrase' AS new_key;

\c :regress_db
DROP DATABASE regress_crypto;
DROP ROLE regress_crypto_app;
DROP ROLE regress_crypto_sender;
DROP ROLE regress_crypto_admin;
