/*-------------------------------------------------------------------------
 *
 * crypto.c
 *	  Payload encryption at rest: the key store, the SQL functions that
 *	  manage keys, and the hooks send.c and receive.c call.
 *
 * Key store (envelope encryption).  A master key (or several: the first
 * wraps, any unwraps) lives in the file named by courier.keyring_file,
 * outside the data directory, readable by the server's OS user only.  Data
 * keys are 32 random bytes made inside the server; courier.data_key holds
 * them only wrapped: AES-256-GCM under the master key, with the key's name
 * and version as associated data, so a wrapped key cannot be moved to
 * another name or version.  WAL, pg_dump and the table never see a data key
 * in the clear.  A data key's passphrase (its 64 lowercase hex digits) is
 * what pgcrypto's pgp_sym_decrypt_bytea() takes; only courier.export_key()
 * (superuser) returns it.
 *
 * Messages.  The body of a message sent to a queue with a key is stored in
 * body_bytes as an OpenPGP message (pgp.c) under the passphrase of the
 * key's current version; key_id (the data_key row: name and version) and
 * body_type ('j', 't', 'b') are stored beside it in the clear.  jsonb is
 * stored as its JSON text.  Receive decrypts whatever key_id says, so a
 * message keeps its key when dead-lettered or redriven.
 *
 * Caches, backend-local.  The master keys, read on first use and again
 * after a configuration reload (the assign hook of courier.keyring_file
 * runs on every reload).  Unwrapped data keys by key_id, in
 * TopMemoryContext: data_key rows never change their key, they are only
 * inserted, deleted and rewrapped, so an entry stays right until the
 * keyring changes or courier.data_key is dropped (key_ids could then come
 * again), when the cache is wiped.  The queue's current key_id lives in the queue cache
 * (catalog.c), invalidated by triggers on courier.data_key and
 * courier.queue_key like any catalog change.
 *
 * Locking: create_key, rotate_key and retire_key serialise on a SHARE ROW
 * EXCLUSIVE lock of courier.data_key; retire_key also takes SHARE locks on
 * the message tables (see 30_crypto.sql).  Sends and receives take no lock
 * here.  Nothing in this file puts key material or payloads into an error,
 * a log line or SQL text.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "courier.h"
#include "pgp.h"

#define DATA_KEY_LEN		32
#define PASS_LEN			(2 * DATA_KEY_LEN)
#define MASTER_KEY_LEN		32
#define MAX_MASTER_KEYS		16
#define MASTER_ID_LEN		16	/* hex digits */
#define WRAP_NONCE_LEN		12
#define WRAP_TAG_LEN		16
#define WRAPPED_LEN			(WRAP_NONCE_LEN + DATA_KEY_LEN + WRAP_TAG_LEN)
#define MAX_KEY_NAME		80

/* The master keys of the keyring file; loaded on first use. */
typedef struct MasterKey
{
	uint8		key[MASTER_KEY_LEN];
	char		id[MASTER_ID_LEN + 1];
} MasterKey;

static MasterKey masters[MAX_MASTER_KEYS];
static int	nmasters = 0;
static bool keyring_stale = true;

/* An unwrapped data key version, cached by key_id. */
typedef struct DataKey
{
	int32		key_id;			/* hash key */
	int32		version;
	char		name[MAX_KEY_NAME + 1];
	char		pass[PASS_LEN + 1]; /* the passphrase: hex of the key */
} DataKey;

static HTAB *data_keys = NULL;

/*
 * courier.data_key, once looked up.  When it is dropped (DROP EXTENSION),
 * key_ids may be reused by a new one, so the cache is wiped.
 */
static Oid	data_key_relid = InvalidOid;
static bool data_keys_stale = false;

static void
wipe_data_keys(void)
{
	HASH_SEQ_STATUS status;
	DataKey    *dk;

	if (data_keys == NULL)
		return;
	hash_seq_init(&status, data_keys);
	while ((dk = hash_seq_search(&status)) != NULL)
		explicit_bzero(dk->pass, sizeof(dk->pass));
	hash_destroy(data_keys);
	data_keys = NULL;
}

static void
crypto_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || (OidIsValid(data_key_relid) && relid == data_key_relid))
	{
		data_keys_stale = true;
		data_key_relid = InvalidOid;
	}
}

/*
 * Assign hook of courier.keyring_file (pg_courier.c).  It runs on every
 * configuration reload, changed or not: the file may have changed.
 */
void
crypto_assign_keyring_file(const char *newval, void *extra)
{
	keyring_stale = true;
}

/* Check hook of courier.keyring_file: an absolute path, or empty. */
bool
crypto_check_keyring_file(char **newval, void **extra, GucSource source)
{
	if (*newval != NULL && (*newval)[0] != '\0' && !is_absolute_path(*newval))
	{
		GUC_check_errdetail("courier.keyring_file must be an absolute path.");
		return false;
	}
	return true;
}

/* Called by _PG_init. */
void
crypto_init(void)
{
	CacheRegisterRelcacheCallback(crypto_relcache_callback, (Datum) 0);
}

static void
hex_encode_lower(const uint8 *data, int len, char *out)
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 0; i < len; i++)
	{
		out[2 * i] = hex[data[i] >> 4];
		out[2 * i + 1] = hex[data[i] & 15];
	}
	out[2 * len] = '\0';
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The public id of a master key: 8 bytes of a hash over a fixed label and the key. */
static void
master_key_id(const uint8 *key, char *id)
{
	static const char label[] = "pg_courier master key id";
	uint8		digest[EVP_MAX_MD_SIZE];
	unsigned int len;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	if (ctx == NULL ||
		EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
		EVP_DigestUpdate(ctx, label, sizeof(label) - 1) != 1 ||
		EVP_DigestUpdate(ctx, key, MASTER_KEY_LEN) != 1 ||
		EVP_DigestFinal_ex(ctx, digest, &len) != 1)
	{
		EVP_MD_CTX_free(ctx);
		elog(ERROR, "pg_courier: SHA-256 failed");
	}
	EVP_MD_CTX_free(ctx);
	hex_encode_lower(digest, MASTER_ID_LEN / 2, id);
}

/*
 * Checks the keyring file as the server checks its SSL key file: a regular
 * file, owned by us (mode 0600 or less) or by root (0640 or less), and
 * outside the data directory, which base backups copy.
 */
static void
check_keyring_file_access(const char *path)
{
	struct stat st;
	char	   *real_file;
	char	   *real_data;

	if (stat(path, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not access keyring file \"%s\": %m", path)));
	if (!S_ISREG(st.st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("keyring file \"%s\" is not a regular file", path)));
	if (st.st_uid != geteuid() && st.st_uid != 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("keyring file \"%s\" must be owned by the database user or root", path)));
	if ((st.st_uid == geteuid() && (st.st_mode & (S_IRWXG | S_IRWXO))) ||
		(st.st_uid == 0 && (st.st_mode & (S_IWGRP | S_IXGRP | S_IRWXO))))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("keyring file \"%s\" has group or world access", path),
				 errdetail("File must have permissions u=rw (0600) or less if owned by the database user, or permissions u=rw,g=r (0640) or less if owned by root.")));
	real_file = realpath(path, NULL);
	real_data = realpath(DataDir, NULL);
	if (real_file != NULL && real_data != NULL &&
		strncmp(real_file, real_data, strlen(real_data)) == 0 &&
		real_file[strlen(real_data)] == '/')
	{
		free(real_file);
		free(real_data);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("keyring file \"%s\" must lie outside the data directory", path),
				 errdetail("Base backups copy the data directory; a master key in it would travel with the data it protects.")));
	}
	free(real_file);
	free(real_data);
}

/*
 * Loads the master keys if the keyring changed.  The file holds one key per
 * line as 64 hex digits; blank lines and lines starting with # are skipped.
 * The first key wraps new data keys; every key unwraps.
 */
static void
load_keyring(void)
{
	FILE	   *file;
	char		line[256];
	int			lineno = 0;
	MasterKey	loaded[MAX_MASTER_KEYS];
	int			nloaded = 0;

	if (!keyring_stale)
		return;
	if (courier_keyring_file == NULL || courier_keyring_file[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("courier.keyring_file is not set"),
				 errhint("A superuser sets courier.keyring_file in postgresql.conf to a file holding a master key, then reloads the configuration.")));
	check_keyring_file_access(courier_keyring_file);
	file = AllocateFile(courier_keyring_file, "r");
	if (file == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open keyring file \"%s\": %m", courier_keyring_file)));
	while (fgets(line, sizeof(line), file) != NULL)
	{
		char	   *p = line;
		int			len;
		bool		ok = true;

		lineno++;
		while (*p == ' ' || *p == '\t')
			p++;
		len = strlen(p);
		while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r' ||
						   p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (len == 0 || p[0] == '#')
			continue;
		if (len != 2 * MASTER_KEY_LEN || nloaded == MAX_MASTER_KEYS)
			ok = false;
		for (int i = 0; ok && i < MASTER_KEY_LEN; i++)
		{
			int			hi = hex_value(p[2 * i]);
			int			lo = hex_value(p[2 * i + 1]);

			if (hi < 0 || lo < 0)
				ok = false;
			else
				loaded[nloaded].key[i] = (uint8) (hi << 4 | lo);
		}
		explicit_bzero(line, sizeof(line));
		if (!ok)
		{
			explicit_bzero(loaded, sizeof(loaded));
			FreeFile(file);
			ereport(ERROR,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("invalid master key on line %d of keyring file \"%s\"",
							lineno, courier_keyring_file),
					 errdetail("Each line holds one master key as 64 hexadecimal digits, at most %d keys; blank lines and lines starting with # are ignored.",
							   MAX_MASTER_KEYS)));
		}
		master_key_id(loaded[nloaded].key, loaded[nloaded].id);
		nloaded++;
	}
	FreeFile(file);
	if (nloaded == 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("keyring file \"%s\" holds no master key", courier_keyring_file)));

	wipe_data_keys();
	explicit_bzero(masters, sizeof(masters));
	memcpy(masters, loaded, sizeof(MasterKey) * nloaded);
	explicit_bzero(loaded, sizeof(loaded));
	nmasters = nloaded;
	keyring_stale = false;
}

static const MasterKey *
find_master(const char *id)
{
	for (int i = 0; i < nmasters; i++)
		if (strcmp(masters[i].id, id) == 0)
			return &masters[i];
	return NULL;
}

/* The associated data binding a wrapped key to its name and version. */
static char *
wrap_aad(const char *name, int32 version)
{
	return psprintf("pg_courier data key %s version %d", name, version);
}

/*
 * AES-256-GCM of a data key under a master key; wrapped is nonce, sealed
 * key, tag.  Returns false only when unwrapping fails authentication.
 */
static bool
wrap_crypt(bool wrap, const MasterKey *master, const char *name, int32 version,
		   uint8 *key, uint8 *wrapped)
{
	char	   *aad = wrap_aad(name, version);
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int			outl;
	bool		ok;

	if (ctx == NULL)
		elog(ERROR, "pg_courier: could not allocate a cipher context");
	if (wrap && !pg_strong_random(wrapped, WRAP_NONCE_LEN))
	{
		EVP_CIPHER_CTX_free(ctx);
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes")));
	}
	ok = EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, wrap ? 1 : 0) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, WRAP_NONCE_LEN, NULL) == 1 &&
		EVP_CipherInit_ex(ctx, NULL, NULL, master->key, wrapped, -1) == 1 &&
		EVP_CipherUpdate(ctx, NULL, &outl, (uint8 *) aad, strlen(aad)) == 1;
	if (ok && wrap)
		ok = EVP_CipherUpdate(ctx, wrapped + WRAP_NONCE_LEN, &outl, key, DATA_KEY_LEN) == 1 &&
			EVP_CipherFinal_ex(ctx, wrapped + WRAP_NONCE_LEN + outl, &outl) == 1 &&
			EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, WRAP_TAG_LEN,
								wrapped + WRAP_NONCE_LEN + DATA_KEY_LEN) == 1;
	else if (ok)
	{
		ok = EVP_CipherUpdate(ctx, key, &outl, wrapped + WRAP_NONCE_LEN, DATA_KEY_LEN) == 1 &&
			EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, WRAP_TAG_LEN,
								wrapped + WRAP_NONCE_LEN + DATA_KEY_LEN) == 1;
		if (ok && EVP_CipherFinal_ex(ctx, key + outl, &outl) != 1)
		{
			EVP_CIPHER_CTX_free(ctx);
			explicit_bzero(key, DATA_KEY_LEN);
			pfree(aad);
			return false;
		}
	}
	EVP_CIPHER_CTX_free(ctx);
	pfree(aad);
	if (!ok)
		elog(ERROR, "pg_courier: AES-256-GCM failed");
	return true;
}

/*
 * The data key of key_id, unwrapped and cached; NULL if no such key
 * version exists.  Needs SPI connected as the owner (courier_enter).
 */
static DataKey *
get_data_key(int32 key_id)
{
	static SPIPlanPtr plan = NULL;
	DataKey    *dk;
	bool		found;
	Datum		arg = Int32GetDatum(key_id);
	bool		isnull;
	HeapTuple	tuple;
	TupleDesc	desc;
	char	   *name;
	int32		version;
	bytea	   *wrapped;
	char	   *master_id;
	const MasterKey *master;
	uint8		key[DATA_KEY_LEN];

	load_keyring();
	if (data_keys_stale || !OidIsValid(data_key_relid))
	{
		wipe_data_keys();
		data_keys_stale = false;
		data_key_relid = get_relname_relid("data_key", get_namespace_oid("courier", false));
	}
	if (data_keys != NULL)
	{
		dk = hash_search(data_keys, &key_id, HASH_FIND, NULL);
		if (dk != NULL)
			return dk;
	}
	if (plan == NULL)
	{
		Oid			argtype = INT4OID;

		plan = SPI_prepare("SELECT key_name, version, wrapped, master_key_id"
						   "  FROM courier.data_key WHERE key_id = $1", 1, &argtype);
		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "pg_courier: could not prepare the data key lookup");
	}
	if (courier_execute(plan, &arg, NULL, true, SPI_OK_SELECT) == 0)
		return NULL;
	tuple = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	name = SPI_getvalue(tuple, desc, 1);
	version = DatumGetInt32(SPI_getbinval(tuple, desc, 2, &isnull));
	wrapped = DatumGetByteaPP(SPI_getbinval(tuple, desc, 3, &isnull));
	master_id = SPI_getvalue(tuple, desc, 4);
	master = find_master(master_id);
	if (master == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("key \"%s\" version %d was wrapped with master key %s, which the keyring file does not hold",
						name, version, master_id),
				 errhint("Put that master key back into courier.keyring_file and reload the configuration.")));
	if (VARSIZE_ANY_EXHDR(wrapped) != WRAPPED_LEN ||
		!wrap_crypt(false, master, name, version, key, (uint8 *) VARDATA_ANY(wrapped)))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("key \"%s\" version %d cannot be unwrapped with master key %s",
						name, version, master_id),
				 errdetail("The wrapped key in courier.data_key was altered.")));
	if (data_keys == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(int32);
		ctl.entrysize = sizeof(DataKey);
		ctl.hcxt = TopMemoryContext;
		data_keys = hash_create("pg_courier data keys", 16, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	dk = hash_search(data_keys, &key_id, HASH_ENTER, &found);
	dk->version = version;
	strlcpy(dk->name, name, sizeof(dk->name));
	hex_encode_lower(key, DATA_KEY_LEN, dk->pass);
	explicit_bzero(key, sizeof(key));
	SPI_freetuptable(SPI_tuptable);
	return dk;
}

static void
check_key_name(text *name)
{
	const char *s = VARDATA_ANY(name);
	int			len = VARSIZE_ANY_EXHDR(name);
	bool		ok = (len >= 1 && len <= MAX_KEY_NAME);

	for (int i = 0; ok && i < len; i++)
		ok = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
			(s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_';
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid key name \"%s\"", pnstrdup(s, Min(len, 200))),
				 errdetail("A key name has 1 to %d characters, each a letter, a digit, \"-\" or \"_\".",
						   MAX_KEY_NAME)));
}

/*
 * The key_id of a key name's version (0: the current one); raises
 * undefined_object if there is none.
 */
static int32
lookup_key_id(text *name, int32 version)
{
	Oid			argtypes[2] = {TEXTOID, INT4OID};
	Datum		args[2] = {PointerGetDatum(name), Int32GetDatum(version)};
	bool		isnull;
	int32		key_id;

	check_key_name(name);
	if (SPI_execute_with_args("SELECT key_id FROM courier.data_key"
							  " WHERE key_name = $1 AND (version = $2 OR $2 = 0)"
							  " ORDER BY version DESC LIMIT 1",
							  2, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "pg_courier: key lookup failed");
	if (SPI_processed == 0)
	{
		if (version == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("key \"%s\" does not exist", text_to_cstring(name))));
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("key \"%s\" has no version %d", text_to_cstring(name), version)));
	}
	key_id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_freetuptable(SPI_tuptable);
	return key_id;
}

/*
 * crypto_load_queue
 *		Sets queue->key_id to the current version of the queue's key, 0 if
 *		it has none.  Called by catalog.c when it loads a queue.
 */
void
crypto_load_queue(CourierQueue *queue)
{
	Oid			argtype = INT4OID;
	Datum		arg = Int32GetDatum(queue->queue_id);
	bool		isnull;

	if (SPI_execute_with_args("SELECT k.key_id FROM courier.queue_key q"
							  "  JOIN courier.data_key k ON k.key_name = q.key_name"
							  " WHERE q.queue_id = $1 ORDER BY k.version DESC LIMIT 1",
							  1, &argtype, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "pg_courier: queue key lookup failed");
	queue->key_id = SPI_processed == 0 ? 0 :
		DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_freetuptable(SPI_tuptable);
}

/* Raises the one error every failed decryption gives. */
static void
report_pgp_failure(PgpResult result, int elevel)
{
	if (result == PGP_UNSUPPORTED)
		ereport(elevel,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("compressed OpenPGP messages are not supported"),
				 errhint("Encrypt with compress-algo=0, pgcrypto's default.")));
	ereport(elevel,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("wrong key or corrupt data")));
}

/* Encrypts len bytes under dk's passphrase with opts; returns a bytea. */
static bytea *
encrypt_bytes(DataKey *dk, const PgpOptions *opts, const char *data, size_t len)
{
	size_t		cap = pgp_encrypted_size(opts, len);
	bytea	   *result = palloc(VARHDRSZ + cap);
	size_t		outlen;
	PgpResult	r;

	r = pgp_encrypt(opts, (const uint8 *) dk->pass, PASS_LEN, (const uint8 *) data, len,
					(uint8 *) VARDATA(result), cap, &outlen);
	if (r != PGP_OK)
		elog(ERROR, "pg_courier: OpenPGP encryption failed (%d)", (int) r);
	SET_VARSIZE(result, VARHDRSZ + outlen);
	return result;
}

/*
 * Decrypts a message under dk's passphrase into a palloc'd buffer with a
 * terminating zero; returns the result code, and the plaintext only on
 * PGP_OK.
 */
static PgpResult
decrypt_bytes(DataKey *dk, bytea *ciphertext, char **data, size_t *len)
{
	size_t		inlen = VARSIZE_ANY_EXHDR(ciphertext);
	char	   *buf = palloc(inlen + 1);
	char		type;
	PgpResult	r;

	r = pgp_decrypt((const uint8 *) dk->pass, PASS_LEN, (const uint8 *) VARDATA_ANY(ciphertext),
					inlen, (uint8 *) buf, inlen, len, &type);
	if (r != PGP_OK)
	{
		pfree(buf);
		return r;
	}
	buf[*len] = '\0';
	*data = buf;
	return PGP_OK;
}

/*
 * crypto_seal
 *		The ciphertext of a message body for a queue with a key; *type gets
 *		the body type code stored beside it.
 *
 * Between courier_enter() and courier_leave().  jsonb is encrypted as its
 * JSON text, text as is, both as OpenPGP text literals, so an operator can
 * read them with pgp_sym_decrypt() as well as pgp_sym_decrypt_bytea().
 */
Datum
crypto_seal(CourierQueue *queue, Datum body, Oid body_type, char *type)
{
	DataKey    *dk = get_data_key(queue->key_id);
	PgpOptions	opts;
	bytea	   *result;

	if (dk == NULL)
		elog(ERROR, "pg_courier: key version %d of queue \"%s\" vanished",
			 queue->key_id, queue->name);
	pgp_options_machine(&opts);
	if (body_type == JSONBOID)
	{
		Jsonb	   *jb = DatumGetJsonbP(body);
		char	   *json = JsonbToCString(NULL, &jb->root, VARSIZE(jb));

		*type = 'j';
		opts.literal_type = PGP_LITERAL_TEXT;
		result = encrypt_bytes(dk, &opts, json, strlen(json));
		explicit_bzero(json, strlen(json));
		pfree(json);
	}
	else
	{
		struct varlena *v = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(body));

		*type = body_type == TEXTOID ? 't' : 'b';
		opts.literal_type = body_type == TEXTOID ? PGP_LITERAL_TEXT : PGP_LITERAL_BINARY;
		result = encrypt_bytes(dk, &opts, VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v));
	}
	return PointerGetDatum(result);
}

/*
 * crypto_open
 *		Decrypts a stored message body into values[0..2] / nulls[0..2] (the
 *		body, body_text and body_bytes columns of a receive row).
 *
 * Between courier_enter() and courier_leave().  A message that cannot be
 * decrypted (its key version is gone, or it fails the integrity check)
 * gives a WARNING naming it and the reason, and false: the caller leaves it
 * leased.  A keyring that cannot be read is an ERROR: it concerns every
 * message, and nothing should be leased.
 */
bool
crypto_open(CourierQueue *queue, int64 msg_id, int32 key_id, char body_type,
			Datum ciphertext, Datum *values, bool *nulls)
{
	DataKey    *dk = get_data_key(key_id);
	char	   *data;
	size_t		len;
	PgpResult	r;

	if (dk == NULL)
	{
		ereport(WARNING,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("message " INT64_FORMAT " of queue \"%s\" cannot be decrypted: its key version no longer exists",
						msg_id, queue->name),
				 errdetail("The message stays leased until its visibility timeout ends.")));
		return false;
	}
	r = decrypt_bytes(dk, DatumGetByteaPP(ciphertext), &data, &len);
	if (r != PGP_OK)
	{
		ereport(WARNING,
				(errcode(r == PGP_UNSUPPORTED ? ERRCODE_FEATURE_NOT_SUPPORTED : ERRCODE_DATA_CORRUPTED),
				 errmsg("message " INT64_FORMAT " of queue \"%s\" cannot be decrypted: %s",
						msg_id, queue->name,
						r == PGP_UNSUPPORTED ? "compressed data is not supported" :
						"wrong key or corrupt data"),
				 errdetail("The message stays leased until its visibility timeout ends.")));
		return false;
	}
	nulls[0] = nulls[1] = nulls[2] = true;
	if (body_type == 'b')
	{
		values[2] = PointerGetDatum(cstring_to_text_with_len(data, len));
		nulls[2] = false;
	}
	else
	{
		if (memchr(data, '\0', len) != NULL ||
			!pg_verify_mbstr(GetDatabaseEncoding(), data, len, true))
		{
			explicit_bzero(data, len);
			ereport(WARNING,
					(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
					 errmsg("message " INT64_FORMAT " of queue \"%s\" cannot be decrypted: its text is not valid in the database encoding",
							msg_id, queue->name),
					 errdetail("The message stays leased until its visibility timeout ends.")));
			return false;
		}
		if (body_type == 'j')
		{
			values[0] = DirectFunctionCall1(jsonb_in, CStringGetDatum(data));
			nulls[0] = false;
		}
		else
		{
			values[1] = PointerGetDatum(cstring_to_text_with_len(data, len));
			nulls[1] = false;
		}
	}
	explicit_bzero(data, len);
	pfree(data);
	return true;
}

/* Superuser-only functions say so themselves: EXECUTE may have been granted. */
static void
require_superuser(const char *function)
{
	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function %s", function),
				 errdetail("Only superusers may call %s: it releases key material.", function)));
}

/*
 * Makes version 'version' of key 'name': 32 random bytes, wrapped with the
 * first master key.  Caller holds the key table lock.
 */
static void
insert_key_version(text *name, int32 version)
{
	Oid			argtypes[4] = {TEXTOID, INT4OID, BYTEAOID, TEXTOID};
	Datum		args[4];
	uint8		key[DATA_KEY_LEN];
	bytea	   *wrapped = palloc(VARHDRSZ + WRAPPED_LEN);
	char	   *cname = text_to_cstring(name);

	load_keyring();
	if (!pg_strong_random(key, DATA_KEY_LEN))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random key")));
	SET_VARSIZE(wrapped, VARHDRSZ + WRAPPED_LEN);
	wrap_crypt(true, &masters[0], cname, version, key, (uint8 *) VARDATA(wrapped));
	explicit_bzero(key, sizeof(key));
	args[0] = PointerGetDatum(name);
	args[1] = Int32GetDatum(version);
	args[2] = PointerGetDatum(wrapped);
	args[3] = CStringGetTextDatum(masters[0].id);
	if (SPI_execute_with_args("INSERT INTO courier.data_key (key_name, version, wrapped, master_key_id)"
							  " VALUES ($1, $2, $3, $4)",
							  4, argtypes, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "pg_courier: could not store the new key");
}

/* The highest version of a key, 0 if none; takes the key table lock. */
static int32
latest_version(text *name)
{
	Oid			argtype = TEXTOID;
	Datum		arg = PointerGetDatum(name);
	bool		isnull;
	Datum		v;

	if (SPI_execute("LOCK TABLE courier.data_key IN SHARE ROW EXCLUSIVE MODE", false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "pg_courier: could not lock courier.data_key");
	if (SPI_execute_with_args("SELECT pg_catalog.max(version) FROM courier.data_key WHERE key_name = $1",
							  1, &argtype, &arg, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "pg_courier: key lookup failed");
	v = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetInt32(v);
}

/*
 * courier.create_key(key_name text) RETURNS integer
 *		Makes a new data key (version 1) inside the server; returns 1.
 *
 * Who may create keys is decided by EXECUTE on this function.
 */
PG_FUNCTION_INFO_V1(courier_create_key);
Datum
courier_create_key(PG_FUNCTION_ARGS)
{
	text	   *name = courier_arg_text(fcinfo, 0, "key name");
	CourierCall call;

	check_key_name(name);
	courier_enter(&call);
	if (latest_version(name) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("key \"%s\" already exists", text_to_cstring(name)),
				 errhint("Use courier.rotate_key() to make a new version.")));
	insert_key_version(name, 1);
	courier_leave(&call);
	PG_RETURN_INT32(1);
}

/*
 * courier.rotate_key(key_name text) RETURNS integer
 *		Makes a new version of a key, which new messages of the queues
 *		using it are encrypted with from the next statement on; returns it.
 *		Old versions stay for the messages that use them.
 */
PG_FUNCTION_INFO_V1(courier_rotate_key);
Datum
courier_rotate_key(PG_FUNCTION_ARGS)
{
	text	   *name = courier_arg_text(fcinfo, 0, "key name");
	CourierCall call;
	int32		version;

	check_key_name(name);
	courier_enter(&call);
	version = latest_version(name);
	if (version == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("key \"%s\" does not exist", text_to_cstring(name))));
	insert_key_version(name, version + 1);
	courier_leave(&call);
	PG_RETURN_INT32(version + 1);
}

/*
 * courier.export_key(key_name text, version integer) RETURNS text
 *		The passphrase of a key version, for pgcrypto's
 *		pgp_sym_decrypt_bytea().  Superusers only.
 */
PG_FUNCTION_INFO_V1(courier_export_key);
Datum
courier_export_key(PG_FUNCTION_ARGS)
{
	text	   *name = courier_arg_text(fcinfo, 0, "key name");
	CourierCall call;
	DataKey    *dk;
	text	   *result;

	courier_arg_notnull(fcinfo, 1, "version");
	require_superuser("courier.export_key");
	courier_enter(&call);
	dk = get_data_key(lookup_key_id(name, PG_GETARG_INT32(1)));
	courier_leave(&call);
	result = cstring_to_text_with_len(dk->pass, PASS_LEN);
	PG_RETURN_TEXT_P(result);
}

/*
 * courier.rewrap_keys() RETURNS integer
 *		Wraps every data key again with the first master key of the keyring,
 *		so that older master keys can be removed from it; returns how many
 *		were rewrapped.  Superusers only.
 */
PG_FUNCTION_INFO_V1(courier_rewrap_keys);
Datum
courier_rewrap_keys(PG_FUNCTION_ARGS)
{
	CourierCall call;
	int32	   *ids;
	uint64		n;
	int32		count = 0;

	require_superuser("courier.rewrap_keys");
	courier_enter(&call);
	load_keyring();
	if (SPI_execute("LOCK TABLE courier.data_key IN SHARE ROW EXCLUSIVE MODE", false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "pg_courier: could not lock courier.data_key");
	if (SPI_execute("SELECT key_id FROM courier.data_key ORDER BY key_id", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "pg_courier: key lookup failed");
	n = SPI_processed;
	ids = palloc(sizeof(int32) * (n + 1));
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;

		ids[i] = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
	}
	for (uint64 i = 0; i < n; i++)
	{
		DataKey    *dk = get_data_key(ids[i]);
		Oid			argtypes[3] = {INT4OID, BYTEAOID, TEXTOID};
		Datum		args[3];
		bytea	   *wrapped = palloc(VARHDRSZ + WRAPPED_LEN);
		uint8		key[DATA_KEY_LEN];

		if (dk == NULL)
			continue;
		for (int j = 0; j < DATA_KEY_LEN; j++)
			key[j] = (uint8) (hex_value(dk->pass[2 * j]) << 4 | hex_value(dk->pass[2 * j + 1]));
		SET_VARSIZE(wrapped, VARHDRSZ + WRAPPED_LEN);
		wrap_crypt(true, &masters[0], dk->name, dk->version, key, (uint8 *) VARDATA(wrapped));
		explicit_bzero(key, sizeof(key));
		args[0] = Int32GetDatum(ids[i]);
		args[1] = PointerGetDatum(wrapped);
		args[2] = CStringGetTextDatum(masters[0].id);
		if (SPI_execute_with_args("UPDATE courier.data_key SET wrapped = $2, master_key_id = $3"
								  " WHERE key_id = $1",
								  3, argtypes, args, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "pg_courier: could not store a rewrapped key");
		count++;
	}
	courier_leave(&call);
	PG_RETURN_INT32(count);
}

/* Encoded S2K count byte for at least count bytes, as pgcrypto rounds. */
static int
s2k_count_byte(int64 count)
{
	for (int c = 0; c < 256; c++)
		if ((((int64) 16 + (c & 15)) << ((c >> 4) + 6)) >= count)
			return c;
	return 255;
}

/*
 * Parses pgcrypto-style options ("cipher-algo=aes128, s2k-mode=3") into
 * opts; starts from the machine-key defaults.
 */
static void
parse_options(const char *options, PgpOptions *opts)
{
	char	   *copy = pstrdup(options);
	char	   *saveptr = NULL;

	for (char *item = strtok_r(copy, ",", &saveptr); item != NULL;
		 item = strtok_r(NULL, ",", &saveptr))
	{
		char	   *eq = strchr(item, '=');
		char	   *name = item;
		char	   *value;
		char	   *end;
		bool		ok = true;

		if (eq == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid encryption option \"%s\"", item),
					 errhint("Options are written as name=value, separated by commas.")));
		*eq = '\0';
		value = eq + 1;
		while (isspace((unsigned char) *name))
			name++;
		for (end = eq - 1; end >= name && isspace((unsigned char) *end); end--)
			*end = '\0';
		while (isspace((unsigned char) *value))
			value++;
		for (end = value + strlen(value) - 1; end >= value && isspace((unsigned char) *end); end--)
			*end = '\0';

		if (strcmp(name, "cipher-algo") == 0)
		{
			if (strcmp(value, "aes") == 0 || strcmp(value, "aes128") == 0)
				opts->cipher_algo = PGP_CIPHER_AES128;
			else if (strcmp(value, "aes192") == 0)
				opts->cipher_algo = PGP_CIPHER_AES192;
			else if (strcmp(value, "aes256") == 0)
				opts->cipher_algo = PGP_CIPHER_AES256;
			else
				ok = false;
		}
		else if (strcmp(name, "s2k-mode") == 0)
		{
			if (strcmp(value, "0") == 0 || strcmp(value, "1") == 0 || strcmp(value, "3") == 0)
				opts->s2k_mode = value[0] - '0';
			else
				ok = false;
		}
		else if (strcmp(name, "s2k-digest-algo") == 0)
		{
			if (strcmp(value, "md5") == 0)
				opts->s2k_digest_algo = PGP_DIGEST_MD5;
			else if (strcmp(value, "sha1") == 0)
				opts->s2k_digest_algo = PGP_DIGEST_SHA1;
			else if (strcmp(value, "sha256") == 0)
				opts->s2k_digest_algo = PGP_DIGEST_SHA256;
			else if (strcmp(value, "sha384") == 0)
				opts->s2k_digest_algo = PGP_DIGEST_SHA384;
			else if (strcmp(value, "sha512") == 0)
				opts->s2k_digest_algo = PGP_DIGEST_SHA512;
			else
				ok = false;
		}
		else if (strcmp(name, "s2k-count") == 0)
		{
			char	   *endp;
			long		count = strtol(value, &endp, 10);

			if (*value == '\0' || *endp != '\0' || count < 1024 || count > 65011712)
				ok = false;
			else
				opts->s2k_count = s2k_count_byte(count);
		}
		else if (strcmp(name, "sess-key") == 0)
		{
			if (strcmp(value, "0") == 0 || strcmp(value, "1") == 0)
				opts->use_sess_key = value[0] == '1';
			else
				ok = false;
		}
		else if (strcmp(name, "compress-algo") == 0)
			ok = strcmp(value, "0") == 0;
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unrecognized encryption option \"%s\"", name),
					 errhint("Valid options are cipher-algo, s2k-mode, s2k-digest-algo, s2k-count, sess-key and compress-algo=0.")));
		if (!ok)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid value \"%s\" for encryption option \"%s\"", value, name)));
	}
	pfree(copy);
}

/*
 * courier.encrypt(data bytea, key_name text, options text) RETURNS bytea
 *		OpenPGP-encrypts data under the current version of a key, as
 *		pgp_sym_encrypt_bytea(data, courier.export_key(...), options) would;
 *		options take pgcrypto's syntax (default: AES-256, S2K mode 1,
 *		SHA-256).  Reveals no key; EXECUTE decides who may call it.
 */
PG_FUNCTION_INFO_V1(courier_encrypt);
Datum
courier_encrypt(PG_FUNCTION_ARGS)
{
	bytea	   *data;
	text	   *name = courier_arg_text(fcinfo, 1, "key name");
	PgpOptions	opts;
	CourierCall call;
	DataKey    *dk;
	bytea	   *result;

	courier_arg_notnull(fcinfo, 0, "data");
	data = PG_GETARG_BYTEA_PP(0);
	pgp_options_machine(&opts);
	if (PG_NARGS() > 2 && !PG_ARGISNULL(2))
		parse_options(text_to_cstring(PG_GETARG_TEXT_PP(2)), &opts);
	courier_enter(&call);
	dk = get_data_key(lookup_key_id(name, 0));
	courier_leave(&call);
	result = encrypt_bytes(dk, &opts, VARDATA_ANY(data), VARSIZE_ANY_EXHDR(data));
	PG_RETURN_BYTEA_P(result);
}

/*
 * courier.decrypt(ciphertext bytea, key_name text, version integer)
 *	 RETURNS bytea
 *		Decrypts an OpenPGP message (pgp_sym_encrypt_bytea's format) with a
 *		key version; every failure is the one error "wrong key or corrupt
 *		data".  Superusers only: it reads anything under any stored key.
 */
PG_FUNCTION_INFO_V1(courier_decrypt);
Datum
courier_decrypt(PG_FUNCTION_ARGS)
{
	bytea	   *ciphertext;
	text	   *name = courier_arg_text(fcinfo, 1, "key name");
	CourierCall call;
	DataKey    *dk;
	char	   *data;
	size_t		len;
	PgpResult	r;
	bytea	   *result;

	courier_arg_notnull(fcinfo, 0, "ciphertext");
	courier_arg_notnull(fcinfo, 2, "version");
	ciphertext = PG_GETARG_BYTEA_PP(0);
	require_superuser("courier.decrypt");
	courier_enter(&call);
	dk = get_data_key(lookup_key_id(name, PG_GETARG_INT32(2)));
	courier_leave(&call);
	r = decrypt_bytes(dk, ciphertext, &data, &len);
	if (r != PGP_OK)
		report_pgp_failure(r, ERROR);
	result = (bytea *) cstring_to_text_with_len(data, len);
	explicit_bzero(data, len);
	PG_RETURN_BYTEA_P(result);
}

/*
 * courier.export_message(queue_name text, msg_id bigint)
 *	 RETURNS TABLE (key_name text, key_version integer, body_type text,
 *					ciphertext bytea, armored text)
 *		The stored ciphertext of an encrypted message, raw and ASCII-armored
 *		(pgcrypto's dearmor() reads it), with the key version that opens
 *		it.  Needs admin on the queue; reveals no key.
 */
PG_FUNCTION_INFO_V1(courier_export_message);
Datum
courier_export_message(PG_FUNCTION_ARGS)
{
	text	   *name = courier_arg_text(fcinfo, 0, "queue name");
	int64		msg_id;
	CourierCall call;
	CourierQueue *queue;
	char	   *sql;
	Oid			argtype = INT8OID;
	Datum		arg;
	TupleDesc	tupdesc;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};
	bool		isnull;
	HeapTuple	tuple;
	bytea	   *ciphertext;
	size_t		len;
	char	   *armored;
	char	   *key_name;
	int32		version;
	char		type;

	MemoryContext caller_context = CurrentMemoryContext;
	MemoryContext spi_context;

	courier_arg_notnull(fcinfo, 1, "msg_id");
	msg_id = PG_GETARG_INT64(1);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	courier_enter(&call);
	queue = courier_lookup_queue(name, false);
	courier_check_privilege(&call, queue, COURIER_PRIV_ADMIN);
	sql = psprintf("SELECT k.key_name, k.version, m.body_type, m.body_bytes, m.key_id"
				   "  FROM courier.q_%d m LEFT JOIN courier.data_key k ON k.key_id = m.key_id"
				   " WHERE m.msg_id = $1", queue->queue_id);
	arg = Int64GetDatum(msg_id);
	if (SPI_execute_with_args(sql, 1, &argtype, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "pg_courier: message lookup failed");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("message " INT64_FORMAT " does not exist in queue \"%s\"",
						msg_id, queue->name)));
	tuple = SPI_tuptable->vals[0];
	(void) SPI_getbinval(tuple, SPI_tuptable->tupdesc, 5, &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("message " INT64_FORMAT " of queue \"%s\" is not encrypted",
						msg_id, queue->name)));
	/* copied out of SPI's memory, which courier_leave frees */
	spi_context = MemoryContextSwitchTo(caller_context);
	key_name = SPI_getvalue(tuple, SPI_tuptable->tupdesc, 1);
	version = DatumGetInt32(SPI_getbinval(tuple, SPI_tuptable->tupdesc, 2, &nulls[1]));
	type = DatumGetChar(SPI_getbinval(tuple, SPI_tuptable->tupdesc, 3, &isnull));
	ciphertext = DatumGetByteaPCopy(SPI_getbinval(tuple, SPI_tuptable->tupdesc, 4, &isnull));
	MemoryContextSwitchTo(spi_context);
	courier_leave(&call);

	len = VARSIZE_ANY_EXHDR(ciphertext);
	armored = palloc(pgp_armor_size(len) + 1);
	armored[pgp_armor((const uint8 *) VARDATA_ANY(ciphertext), len, armored)] = '\0';
	nulls[0] = key_name == NULL;
	values[0] = key_name == NULL ? (Datum) 0 : CStringGetTextDatum(key_name);
	values[1] = Int32GetDatum(version);
	values[2] = CStringGetTextDatum(type == 'j' ? "jsonb" : type == 't' ? "text" : "bytea");
	values[3] = PointerGetDatum(ciphertext);
	values[4] = CStringGetTextDatum(armored);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
