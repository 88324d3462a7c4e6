/*-------------------------------------------------------------------------
 *
 * pgp.c
 *	  OpenPGP symmetric encryption, encode and decode, as pgcrypto's
 *	  pgp_sym_encrypt_bytea() writes it and pgp_sym_decrypt_bytea() reads it.
 *
 * Layout written (RFC 4880; pgcrypto's pgp-encrypt.c writes the same):
 *	 tag 3, v4: cipher, S2K spec (mode, digest, salt, count), and with a
 *		session key that key encrypted in CFB mode under the S2K key;
 *	 tag 18, v1: CFB with a zero IV over
 *		random prefix (block size) + its last two bytes repeated,
 *		tag 11 literal packet (type, empty name, zero date, data),
 *		tag 19 MDC packet: D3 14 + SHA-1 of everything before its hash.
 * Packets whose body may exceed one chunk are written as pgcrypto does:
 * partial-length chunks of 16 KiB, ending in a normal length (possibly 0).
 *
 * Decoding reads everything pgcrypto writes, old- and new-format headers,
 * AES-128/192/256, S2K modes 0, 1 and 3 with MD5, SHA-1 or SHA-2 digests,
 * with or without a session key.  It decrypts into the caller's buffer and
 * checks the MDC over the whole plaintext before it looks at the literal
 * packet, so no plaintext is released unless the check passed; every
 * failure before that point gives PGP_CORRUPT and the buffer is wiped.
 * Packets without MDC (tag 9) and compressed data are refused.
 *
 * No allocation beyond OpenSSL's own contexts, which are freed before every
 * return; nothing here can raise a PostgreSQL error.  Concurrency: none,
 * no state outside the call.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "pgp.h"

#define PKT_SESSKEY		3
#define PKT_SYM_MDC		18
#define PKT_COMPRESSED	8
#define PKT_LITERAL		11
#define PKT_MARKER		10

#define STREAM_SHIFT	14
#define STREAM_BLOCK	(1 << STREAM_SHIFT)
#define MDC_LEN			22		/* D3 14 + SHA-1 */
#define SALT_LEN		8
#define MAX_KEY			32
#define MAX_BLOCK		16
#define MAX_DIGEST		64
#define LITERAL_HDR		6		/* type, name length 0, 4-byte date */

/* header kinds */
#define LEN_NORMAL		1
#define LEN_PARTIAL		2
#define LEN_REST		3		/* old format, indeterminate: to the end */

/*
 * With OpenSSL 3, EVP_aes_256_cfb128() and friends make every
 * EVP_CipherInit_ex() look the algorithm up in the provider store again,
 * which costs more than encrypting a small message; the algorithms are
 * fetched once per process instead (and never freed: a handful of objects).
 */
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
#define PGP_FETCH 1
#endif

static const EVP_CIPHER *
cipher_evp(int algo)
{
#ifdef PGP_FETCH
	static EVP_CIPHER *fetched[3];
	static const char *const names[3] = {"AES-128-CFB", "AES-192-CFB", "AES-256-CFB"};
	int			i;

	if (algo < PGP_CIPHER_AES128 || algo > PGP_CIPHER_AES256)
		return NULL;
	i = algo - PGP_CIPHER_AES128;
	if (fetched[i] == NULL)
		fetched[i] = EVP_CIPHER_fetch(NULL, names[i], NULL);
	return fetched[i];
#else
	switch (algo)
	{
		case PGP_CIPHER_AES128:
			return EVP_aes_128_cfb128();
		case PGP_CIPHER_AES192:
			return EVP_aes_192_cfb128();
		case PGP_CIPHER_AES256:
			return EVP_aes_256_cfb128();
	}
	return NULL;
#endif
}

static int
cipher_key_len(int algo)
{
	return algo == PGP_CIPHER_AES128 ? 16 : algo == PGP_CIPHER_AES192 ? 24 : 32;
}

static const EVP_MD *
digest_evp(int algo)
{
	static const char *const names[11] = {
		NULL, "MD5", "SHA1", NULL, NULL, NULL, NULL, NULL, "SHA256", "SHA384", "SHA512"
	};
#ifdef PGP_FETCH
	static EVP_MD *fetched[11];

	if (algo < 0 || algo > 10 || names[algo] == NULL)
		return NULL;
	if (fetched[algo] == NULL)
		fetched[algo] = EVP_MD_fetch(NULL, names[algo], NULL);
	return fetched[algo];
#else
	if (algo < 0 || algo > 10 || names[algo] == NULL)
		return NULL;
	return EVP_get_digestbyname(names[algo]);
#endif
}

bool
pgp_cipher_supported(int cipher_algo)
{
	return cipher_evp(cipher_algo) != NULL;
}

bool
pgp_digest_supported(int digest_algo)
{
	return digest_evp(digest_algo) != NULL;
}

/*
 * The options for machine-generated keys: a 256-bit random passphrase needs
 * no stretching, so S2K mode 1 (one salted hash) with SHA-256 and AES-256.
 * A fresh salt per message gives a fresh key per message.
 */
void
pgp_options_machine(PgpOptions *opts)
{
	opts->cipher_algo = PGP_CIPHER_AES256;
	opts->s2k_mode = 1;
	opts->s2k_digest_algo = PGP_DIGEST_SHA256;
	opts->s2k_count = 96;		/* 65536 bytes, used by mode 3 only */
	opts->use_sess_key = false;
	opts->literal_type = PGP_LITERAL_BINARY;
}

static uint32_t
s2k_decode_count(int c)
{
	return ((uint32_t) 16 + (c & 15)) << ((c >> 4) + 6);
}

/*
 * RFC 4880 3.7.1: the key of keylen bytes from a passphrase.  Keys longer
 * than one digest take further digests, each preloaded with one more zero.
 */
static bool
s2k_derive(int mode, int digest_algo, const uint8_t *salt, int count_byte,
		   const uint8_t *pass, size_t passlen, uint8_t *key, int keylen)
{
	const EVP_MD *md = digest_evp(digest_algo);
	EVP_MD_CTX *ctx;
	uint8_t		buf[MAX_DIGEST];
	unsigned int mdlen;
	int			done = 0;
	bool		ok = true;
	static const uint8_t zeros[MAX_KEY] = {0};

	if (md == NULL || (mode != 0 && mode != 1 && mode != 3))
		return false;
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL)
		return false;
	for (int preload = 0; ok && done < keylen; preload++)
	{
		ok = EVP_DigestInit_ex(ctx, md, NULL) == 1 &&
			EVP_DigestUpdate(ctx, zeros, preload) == 1;
		if (ok && mode == 0)
			ok = EVP_DigestUpdate(ctx, pass, passlen) == 1;
		else if (ok && mode == 1)
			ok = EVP_DigestUpdate(ctx, salt, SALT_LEN) == 1 &&
				EVP_DigestUpdate(ctx, pass, passlen) == 1;
		else if (ok)
		{
			size_t		total = SALT_LEN + passlen;
			size_t		count = s2k_decode_count(count_byte);

			if (count < total)
				count = total;
			while (ok && count >= total)
			{
				ok = EVP_DigestUpdate(ctx, salt, SALT_LEN) == 1 &&
					EVP_DigestUpdate(ctx, pass, passlen) == 1;
				count -= total;
			}
			if (ok && count > 0)
			{
				if (count <= SALT_LEN)
					ok = EVP_DigestUpdate(ctx, salt, count) == 1;
				else
					ok = EVP_DigestUpdate(ctx, salt, SALT_LEN) == 1 &&
						EVP_DigestUpdate(ctx, pass, count - SALT_LEN) == 1;
			}
		}
		if (ok)
			ok = EVP_DigestFinal_ex(ctx, buf, &mdlen) == 1;
		if (ok)
		{
			int			n = keylen - done < (int) mdlen ? keylen - done : (int) mdlen;

			memcpy(key + done, buf, n);
			done += n;
		}
	}
	OPENSSL_cleanse(buf, sizeof(buf));
	EVP_MD_CTX_free(ctx);
	return ok;
}

/* CFB with a zero IV, in place allowed; false if OpenSSL failed. */
static bool
cfb_crypt(int algo, const uint8_t *key, bool encrypt, const uint8_t *in, size_t len, uint8_t *out)
{
	static const uint8_t iv[MAX_BLOCK] = {0};
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	bool		ok;
	int			outl;

	if (ctx == NULL)
		return false;
	ok = EVP_CipherInit_ex(ctx, cipher_evp(algo), NULL, key, iv, encrypt ? 1 : 0) == 1;
	while (ok && len > 0)
	{
		int			n = len > (1 << 30) ? (1 << 30) : (int) len;

		ok = EVP_CipherUpdate(ctx, out, &outl, in, n) == 1 && outl == n;
		in += n;
		out += n;
		len -= n;
	}
	EVP_CIPHER_CTX_free(ctx);
	return ok;
}

/* ---------------------------------------------------------------------
 * Encoding
 * ---------------------------------------------------------------------
 */

static size_t
newlen_size(size_t len)
{
	return len < 192 ? 1 : len < 8384 ? 2 : 5;
}

static size_t
render_newlen(uint8_t *h, size_t len)
{
	if (len < 192)
	{
		h[0] = (uint8_t) len;
		return 1;
	}
	if (len < 8384)
	{
		h[0] = (uint8_t) (((len - 192) >> 8) + 192);
		h[1] = (uint8_t) ((len - 192) & 255);
		return 2;
	}
	h[0] = 255;
	h[1] = (uint8_t) ((len >> 24) & 255);
	h[2] = (uint8_t) ((len >> 16) & 255);
	h[3] = (uint8_t) ((len >> 8) & 255);
	h[4] = (uint8_t) (len & 255);
	return 5;
}

/* Bytes of the length headers of a streamed packet body of len bytes. */
static size_t
stream_headers_size(size_t len)
{
	return len / STREAM_BLOCK + newlen_size(len % STREAM_BLOCK);
}

/*
 * A streamed packet body of known total length, cut as pgcrypto cuts it:
 * full 16 KiB chunks with a partial length header, then the rest (maybe
 * nothing) with a normal one.
 */
typedef struct Chunker
{
	size_t		remaining;		/* body bytes not yet written */
	size_t		chunk_left;		/* of the current chunk */
	bool		final;			/* the normal-length chunk has begun */
} Chunker;

/* Output buffer; overflow is remembered and reported at the end. */
typedef struct OutBuf
{
	uint8_t    *buf;
	size_t		cap;
	size_t		pos;
	bool		overflow;
} OutBuf;

static void
out_put(OutBuf *o, const void *data, size_t n)
{
	if (o->overflow || n > o->cap - o->pos)
	{
		o->overflow = true;
		return;
	}
	memcpy(o->buf + o->pos, data, n);
	o->pos += n;
}

/* The header to write before the next body byte, if a chunk starts there. */
static size_t
chunk_header(Chunker *c, uint8_t *hdr)
{
	if (c->chunk_left > 0 || c->final)
		return 0;
	if (c->remaining >= STREAM_BLOCK)
	{
		hdr[0] = 0xE0 | STREAM_SHIFT;
		c->chunk_left = STREAM_BLOCK;
		return 1;
	}
	c->final = true;
	c->chunk_left = c->remaining;
	return render_newlen(hdr, c->remaining);
}

/* State of one encryption: the inner plaintext goes through here. */
typedef struct EncState
{
	EVP_CIPHER_CTX *cipher;
	EVP_MD_CTX *mdc;
	Chunker		outer;			/* tag 18 body */
	OutBuf	   *out;
	bool		ok;
} EncState;

/* Writes n bytes of the tag 18 body (already encrypted, or the version). */
static void
outer_write(EncState *st, const uint8_t *data, size_t n)
{
	while (n > 0)
	{
		uint8_t		hdr[5];
		size_t		h = chunk_header(&st->outer, hdr);
		size_t		take;

		if (h > 0)
			out_put(st->out, hdr, h);
		take = n < st->outer.chunk_left ? n : st->outer.chunk_left;
		if (take == 0)
		{
			st->ok = false;		/* more data than announced: cannot happen */
			return;
		}
		out_put(st->out, data, take);
		st->outer.chunk_left -= take;
		st->outer.remaining -= take;
		data += take;
		n -= take;
	}
}

/* Plaintext of the tag 18 body: hashed for the MDC (if hash), encrypted. */
static void
enc_write(EncState *st, const uint8_t *data, size_t n, bool hash)
{
	uint8_t		buf[4096];
	size_t		used = 0;		/* of buf, to wipe: most calls write a few bytes */

	if (hash && EVP_DigestUpdate(st->mdc, data, n) != 1)
		st->ok = false;
	while (st->ok && n > 0)
	{
		int			take = n < sizeof(buf) ? (int) n : (int) sizeof(buf);
		int			outl;

		if ((size_t) take > used)
			used = take;

		if (EVP_EncryptUpdate(st->cipher, buf, &outl, data, take) != 1 || outl != take)
		{
			st->ok = false;
			break;
		}
		outer_write(st, buf, take);
		data += take;
		n -= take;
	}
	OPENSSL_cleanse(buf, used);
}

/* Writes a streamed inner packet (tag byte, then chunked body) into st. */
static void
enc_literal(EncState *st, char type, const uint8_t *data, size_t len)
{
	Chunker		c = {LITERAL_HDR + len, 0, false};
	uint8_t		tag = 0xC0 | PKT_LITERAL;
	uint8_t		lit[LITERAL_HDR] = {(uint8_t) type, 0, 0, 0, 0, 0};
	const uint8_t *src = lit;
	size_t		srclen = LITERAL_HDR;
	bool		in_data = false;

	enc_write(st, &tag, 1, true);
	for (;;)
	{
		uint8_t		hdr[5];
		size_t		h;
		size_t		take;

		if (srclen == 0)
		{
			if (in_data)
				break;
			in_data = true;
			src = data;
			srclen = len;
			continue;
		}
		h = chunk_header(&c, hdr);
		if (h > 0)
			enc_write(st, hdr, h, true);
		take = srclen < c.chunk_left ? srclen : c.chunk_left;
		enc_write(st, src, take, true);
		c.chunk_left -= take;
		c.remaining -= take;
		src += take;
		srclen -= take;
	}
	/* a body that ended on a chunk boundary still needs its final header */
	{
		uint8_t		hdr[5];
		size_t		h = chunk_header(&c, hdr);

		if (h > 0)
			enc_write(st, hdr, h, true);
	}
}

static size_t
literal_packet_size(size_t len)
{
	return 1 + stream_headers_size(LITERAL_HDR + len) + LITERAL_HDR + len;
}

static size_t
sesskey_packet_body_size(const PgpOptions *opts)
{
	size_t		n = 4 + (opts->s2k_mode > 0 ? SALT_LEN : 0) + (opts->s2k_mode == 3 ? 1 : 0);

	if (opts->use_sess_key)
		n += 1 + cipher_key_len(opts->cipher_algo);
	return n;
}

static bool
options_valid(const PgpOptions *opts)
{
	return opts != NULL && cipher_evp(opts->cipher_algo) != NULL &&
		digest_evp(opts->s2k_digest_algo) != NULL &&
		(opts->s2k_mode == 0 || opts->s2k_mode == 1 || opts->s2k_mode == 3) &&
		opts->s2k_count >= 0 && opts->s2k_count <= 255 &&
		(opts->literal_type == PGP_LITERAL_BINARY || opts->literal_type == PGP_LITERAL_TEXT ||
		 opts->literal_type == 'u');
}

/* The exact size pgp_encrypt writes for len bytes of data. */
size_t
pgp_encrypted_size(const PgpOptions *opts, size_t len)
{
	size_t		body3 = sesskey_packet_body_size(opts);
	size_t		body18 = 1 + MAX_BLOCK + 2 + literal_packet_size(len) + MDC_LEN;

	return 1 + newlen_size(body3) + body3 + 1 + stream_headers_size(body18) + body18;
}

/*
 * pgp_encrypt
 *		Encrypts data with passphrase pass as pgp_sym_encrypt_bytea would
 *		with the given options; fresh random salt, prefix and session key.
 *
 * out must hold pgp_encrypted_size() bytes.
 */
PgpResult
pgp_encrypt(const PgpOptions *opts, const uint8_t *pass, size_t passlen,
			const uint8_t *data, size_t len,
			uint8_t *out, size_t outcap, size_t *outlen)
{
	static const uint8_t zero_iv[MAX_BLOCK] = {0};
	OutBuf		o = {out, outcap, 0, false};
	EncState	st;
	uint8_t		rnd[SALT_LEN + MAX_BLOCK + MAX_KEY];
	uint8_t		salt[SALT_LEN];
	uint8_t		s2k_key[MAX_KEY];
	uint8_t		sess_key[MAX_KEY];
	uint8_t		p3[64];
	uint8_t		hdr[8];
	uint8_t		prefix[MAX_BLOCK + 2];
	uint8_t		mdc[MDC_LEN];
	unsigned int mdlen;
	size_t		n3 = 0;
	size_t		body3;
	int			keylen;
	PgpResult	result = PGP_INTERNAL;

	if (!options_valid(opts) || len > (size_t) 1 << 30)
		return PGP_BAD_OPTIONS;
	if (outcap < pgp_encrypted_size(opts, len))
		return PGP_NO_SPACE;
	keylen = cipher_key_len(opts->cipher_algo);
	memset(&st, 0, sizeof(st));

	/* one call for all random bytes: each call costs more than a few bytes do */
	if (RAND_bytes(rnd, SALT_LEN + MAX_BLOCK + (opts->use_sess_key ? keylen : 0)) != 1)
		goto done;
	memcpy(salt, rnd, SALT_LEN);
	memcpy(prefix, rnd + SALT_LEN, MAX_BLOCK);
	if (opts->use_sess_key)
		memcpy(sess_key, rnd + SALT_LEN + MAX_BLOCK, keylen);
	OPENSSL_cleanse(rnd, sizeof(rnd));
	if (!s2k_derive(opts->s2k_mode, opts->s2k_digest_algo, salt, opts->s2k_count,
					pass, passlen, s2k_key, keylen))
		goto done;

	/* tag 3 */
	body3 = sesskey_packet_body_size(opts);
	p3[n3++] = 4;
	p3[n3++] = (uint8_t) opts->cipher_algo;
	p3[n3++] = (uint8_t) opts->s2k_mode;
	p3[n3++] = (uint8_t) opts->s2k_digest_algo;
	if (opts->s2k_mode > 0)
	{
		memcpy(p3 + n3, salt, SALT_LEN);
		n3 += SALT_LEN;
	}
	if (opts->s2k_mode == 3)
		p3[n3++] = (uint8_t) opts->s2k_count;
	if (opts->use_sess_key)
	{
		p3[n3] = (uint8_t) opts->cipher_algo;
		memcpy(p3 + n3 + 1, sess_key, keylen);
		if (!cfb_crypt(opts->cipher_algo, s2k_key, true, p3 + n3, 1 + keylen, p3 + n3))
			goto done;
		n3 += 1 + keylen;
	}
	else
		memcpy(sess_key, s2k_key, keylen);
	hdr[0] = 0xC0 | PKT_SESSKEY;
	out_put(&o, hdr, 1 + render_newlen(hdr + 1, body3));
	out_put(&o, p3, n3);

	/* tag 18 */
	hdr[0] = 0xC0 | PKT_SYM_MDC;
	out_put(&o, hdr, 1);
	st.ok = true;
	st.out = &o;
	st.outer.remaining = 1 + MAX_BLOCK + 2 + literal_packet_size(len) + MDC_LEN;
	st.cipher = EVP_CIPHER_CTX_new();
	st.mdc = EVP_MD_CTX_new();
	if (st.cipher == NULL || st.mdc == NULL ||
		EVP_EncryptInit_ex(st.cipher, cipher_evp(opts->cipher_algo), NULL, sess_key, zero_iv) != 1 ||
		EVP_DigestInit_ex(st.mdc, digest_evp(PGP_DIGEST_SHA1), NULL) != 1)
		goto done;
	hdr[0] = 1;					/* version */
	outer_write(&st, hdr, 1);
	prefix[MAX_BLOCK] = prefix[MAX_BLOCK - 2];
	prefix[MAX_BLOCK + 1] = prefix[MAX_BLOCK - 1];
	enc_write(&st, prefix, MAX_BLOCK + 2, true);
	enc_literal(&st, opts->literal_type, data, len);
	mdc[0] = 0xD3;
	mdc[1] = 0x14;
	enc_write(&st, mdc, 2, true);
	if (!st.ok || EVP_DigestFinal_ex(st.mdc, mdc + 2, &mdlen) != 1 || mdlen != 20)
		goto done;
	enc_write(&st, mdc + 2, 20, false);
	if (!st.ok || st.outer.remaining != 0)
		goto done;
	/* a body that ended on a chunk boundary still needs its final header */
	{
		size_t		h = chunk_header(&st.outer, hdr);

		if (h > 0)
			out_put(&o, hdr, h);
	}
	if (o.overflow)
	{
		result = PGP_NO_SPACE;
		goto done;
	}
	*outlen = o.pos;
	result = PGP_OK;

done:
	EVP_CIPHER_CTX_free(st.cipher);
	EVP_MD_CTX_free(st.mdc);
	OPENSSL_cleanse(s2k_key, sizeof(s2k_key));
	OPENSSL_cleanse(sess_key, sizeof(sess_key));
	OPENSSL_cleanse(prefix, sizeof(prefix));
	OPENSSL_cleanse(p3, sizeof(p3));
	return result;
}

/* ---------------------------------------------------------------------
 * Decoding
 * ---------------------------------------------------------------------
 */

/*
 * Parses a packet header at buf[*pos]; returns LEN_* or 0 if malformed.
 * A new-format length header alone (the next chunk of a partial body) is
 * parsed by parse_newlen.
 */
static int
parse_newlen(const uint8_t *buf, size_t len, size_t *pos, size_t *bodylen)
{
	uint8_t		b;

	if (*pos >= len)
		return 0;
	b = buf[(*pos)++];
	if (b < 192)
	{
		*bodylen = b;
		return LEN_NORMAL;
	}
	if (b < 224)
	{
		if (*pos >= len)
			return 0;
		*bodylen = ((size_t) (b - 192) << 8) + buf[(*pos)++] + 192;
		return LEN_NORMAL;
	}
	if (b == 255)
	{
		if (len - *pos < 4)
			return 0;
		*bodylen = ((size_t) buf[*pos] << 24) | ((size_t) buf[*pos + 1] << 16) |
			((size_t) buf[*pos + 2] << 8) | buf[*pos + 3];
		*pos += 4;
		return LEN_NORMAL;
	}
	*bodylen = (size_t) 1 << (b & 0x1F);
	return LEN_PARTIAL;
}

static int
parse_header(const uint8_t *buf, size_t len, size_t *pos, int *tag, size_t *bodylen)
{
	uint8_t		b;
	int			lentype;

	if (*pos >= len)
		return 0;
	b = buf[(*pos)++];
	if ((b & 0x80) == 0)
		return 0;
	if (b & 0x40)
	{
		*tag = b & 0x3F;
		return parse_newlen(buf, len, pos, bodylen);
	}
	*tag = (b >> 2) & 0x0F;
	lentype = b & 3;
	if (lentype == 3)
	{
		*bodylen = len - *pos;
		return LEN_REST;
	}
	if (len - *pos < (size_t) (1 << lentype))
		return 0;
	*bodylen = 0;
	for (int i = 0; i < (1 << lentype); i++)
		*bodylen = (*bodylen << 8) | buf[(*pos)++];
	return LEN_NORMAL;
}

/*
 * Gathers a packet body that starts at buf[*pos] (its first length already
 * parsed as kind/bodylen) into dst, which may overlap buf as long as dst
 * lies at or before buf + *pos.  Returns its length, or (size_t) -1.
 */
static size_t
gather_body(const uint8_t *buf, size_t len, size_t *pos, int kind, size_t bodylen, uint8_t *dst)
{
	size_t		total = 0;

	for (;;)
	{
		if (bodylen > len - *pos)
			return (size_t) -1;
		memmove(dst + total, buf + *pos, bodylen);
		total += bodylen;
		*pos += bodylen;
		if (kind != LEN_PARTIAL)
			return total;
		kind = parse_newlen(buf, len, pos, &bodylen);
		if (kind == 0)
			return (size_t) -1;
	}
}

/*
 * pgp_decrypt
 *		Decrypts a message written by pgp_sym_encrypt_bytea (or pgp_encrypt)
 *		with passphrase pass; the data goes to out, its literal type to
 *		*literal_type.
 *
 * out must hold len bytes (the data is never longer than the message).  On
 * any result but PGP_OK, out holds nothing of the plaintext.
 */
PgpResult
pgp_decrypt(const uint8_t *pass, size_t passlen, const uint8_t *msg, size_t len,
			uint8_t *out, size_t outcap, size_t *outlen, char *literal_type)
{
	size_t		pos = 0;
	int			tag;
	int			kind;
	size_t		bodylen;
	const uint8_t *p3 = NULL;
	size_t		n3 = 0;
	int			s2k_cipher;
	int			s2k_mode;
	int			s2k_digest;
	const uint8_t *salt = NULL;
	int			count_byte = 0;
	size_t		q;
	uint8_t		s2k_key[MAX_KEY];
	uint8_t		sess[1 + MAX_KEY];
	int			cipher;
	const uint8_t *key;
	size_t		body = 0;		/* length of the gathered tag 18 body in out */
	size_t		m;
	uint8_t	   *dec;
	uint8_t		hash[20];
	unsigned int mdlen;
	int			bs = MAX_BLOCK;
	size_t		ipos;
	size_t		iend;
	size_t		litlen;
	size_t		namelen;
	bool		mdc_ok;
	PgpResult	result = PGP_CORRUPT;

	*outlen = 0;
	if (outcap < len)
		return PGP_NO_SPACE;

	/* Outer packets: markers, one tag 3, then one tag 18 reaching the end. */
	for (;;)
	{
		kind = parse_header(msg, len, &pos, &tag, &bodylen);
		if (kind == 0)
			goto fail;
		if (tag == PKT_MARKER && kind == LEN_NORMAL && bodylen <= len - pos)
		{
			pos += bodylen;
			continue;
		}
		if (tag != PKT_SESSKEY || kind == LEN_PARTIAL || p3 != NULL || bodylen > len - pos)
			goto fail;
		p3 = msg + pos;
		n3 = bodylen;
		pos += bodylen;
		break;
	}
	kind = parse_header(msg, len, &pos, &tag, &bodylen);
	if (kind == 0 || tag != PKT_SYM_MDC)
		goto fail;
	body = gather_body(msg, len, &pos, kind, bodylen, out);
	if (body == (size_t) -1)
	{
		body = 0;
		goto fail;
	}
	if (pos != len)
		goto fail;

	/* tag 3: version 4, cipher, S2K spec, optional encrypted session key */
	if (n3 < 4 || p3[0] != 4)
		goto fail;
	s2k_cipher = p3[1];
	s2k_mode = p3[2];
	s2k_digest = p3[3];
	q = 4;
	if (cipher_evp(s2k_cipher) == NULL || digest_evp(s2k_digest) == NULL)
		goto fail;
	if (s2k_mode == 1 || s2k_mode == 3)
	{
		if (n3 - q < SALT_LEN)
			goto fail;
		salt = p3 + q;
		q += SALT_LEN;
		if (s2k_mode == 3)
		{
			if (n3 - q < 1)
				goto fail;
			count_byte = p3[q++];
		}
	}
	else if (s2k_mode != 0)
		goto fail;
	if (!s2k_derive(s2k_mode, s2k_digest, salt, count_byte, pass, passlen,
					s2k_key, cipher_key_len(s2k_cipher)))
		goto fail;
	if (n3 == q)
	{
		cipher = s2k_cipher;
		key = s2k_key;
	}
	else
	{
		size_t		esk = n3 - q;

		if (esk < 17 || esk > 1 + MAX_KEY ||
			!cfb_crypt(s2k_cipher, s2k_key, false, p3 + q, esk, sess))
			goto fail;
		cipher = sess[0];
		if (cipher_evp(cipher) == NULL || (size_t) cipher_key_len(cipher) != esk - 1)
			goto fail;
		key = sess + 1;
	}

	/* tag 18: version 1, then CFB over prefix, packets and MDC */
	if (body < 1 + (size_t) bs + 2 + MDC_LEN || out[0] != 1)
		goto fail;
	dec = out + 1;
	m = body - 1;
	if (!cfb_crypt(cipher, key, false, dec, m, dec))
		goto fail;
	if (EVP_Digest(dec, m - 20, hash, &mdlen, digest_evp(PGP_DIGEST_SHA1), NULL) != 1 || mdlen != 20)
	{
		result = PGP_INTERNAL;
		goto fail;
	}
	mdc_ok = CRYPTO_memcmp(hash, dec + m - 20, 20) == 0;
	mdc_ok &= dec[m - MDC_LEN] == 0xD3 && dec[m - MDC_LEN + 1] == 0x14;
	mdc_ok &= dec[bs - 2] == dec[bs] && dec[bs - 1] == dec[bs + 1];
	if (!mdc_ok)
		goto fail;

	/*
	 * Authentic from here on.  One literal packet fills the space between
	 * prefix and MDC; its body is gathered to the start of out.
	 */
	ipos = bs + 2;
	iend = m - MDC_LEN;
	kind = parse_header(dec, iend, &ipos, &tag, &bodylen);
	if (kind == 0)
		goto fail;
	if (tag == PKT_COMPRESSED)
	{
		result = PGP_UNSUPPORTED;
		goto fail;
	}
	if (tag != PKT_LITERAL)
		goto fail;
	litlen = gather_body(dec, iend, &ipos, kind, bodylen, out);
	if (litlen == (size_t) -1 || ipos != iend || litlen < 2)
		goto fail;
	namelen = out[1];
	if (litlen < 2 + namelen + 4)
		goto fail;
	*literal_type = (char) out[0];
	*outlen = litlen - (2 + namelen + 4);
	memmove(out, out + 2 + namelen + 4, *outlen);
	/* wipe the rest: the MDC and packet framing, still decrypted */
	OPENSSL_cleanse(out + *outlen, body - *outlen);
	OPENSSL_cleanse(s2k_key, sizeof(s2k_key));
	OPENSSL_cleanse(sess, sizeof(sess));
	return PGP_OK;

fail:
	OPENSSL_cleanse(out, body);
	OPENSSL_cleanse(s2k_key, sizeof(s2k_key));
	OPENSSL_cleanse(sess, sizeof(sess));
	*outlen = 0;
	return result;
}

/* ---------------------------------------------------------------------
 * ASCII armor (RFC 4880 6.2), as pgcrypto's armor() writes it
 * ---------------------------------------------------------------------
 */

#define ARMOR_HEAD	"-----BEGIN PGP MESSAGE-----\n\n"
#define ARMOR_TAIL	"-----END PGP MESSAGE-----\n"
#define ARMOR_LINE	76

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t
b64_encode(const uint8_t *data, size_t len, char *out, bool wrap)
{
	size_t		o = 0;
	size_t		line = 0;

	for (size_t i = 0; i < len; i += 3)
	{
		uint32_t	v = (uint32_t) data[i] << 16;

		if (i + 1 < len)
			v |= (uint32_t) data[i + 1] << 8;
		if (i + 2 < len)
			v |= data[i + 2];
		out[o++] = b64[(v >> 18) & 63];
		out[o++] = b64[(v >> 12) & 63];
		out[o++] = i + 1 < len ? b64[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < len ? b64[v & 63] : '=';
		line += 4;
		if (wrap && line >= ARMOR_LINE)
		{
			out[o++] = '\n';
			line = 0;
		}
	}
	if (wrap && line > 0)
		out[o++] = '\n';
	return o;
}

static uint32_t
crc24(const uint8_t *data, size_t len)
{
	uint32_t	crc = 0xB704CEL;

	while (len--)
	{
		crc ^= (uint32_t) (*data++) << 16;
		for (int i = 0; i < 8; i++)
		{
			crc <<= 1;
			if (crc & 0x1000000)
				crc ^= 0x1864CFBL;
		}
	}
	return crc & 0xFFFFFFL;
}

/* Bytes pgp_armor writes for len bytes of data (no terminating zero). */
size_t
pgp_armor_size(size_t len)
{
	size_t		b = (len + 2) / 3 * 4;

	return strlen(ARMOR_HEAD) + b + (b + ARMOR_LINE - 1) / ARMOR_LINE + 6 + strlen(ARMOR_TAIL);
}

/* Writes the armored form of data to out; returns its length. */
size_t
pgp_armor(const uint8_t *data, size_t len, char *out)
{
	size_t		o = 0;
	uint32_t	crc = crc24(data, len);
	uint8_t		c[3] = {(uint8_t) (crc >> 16), (uint8_t) (crc >> 8), (uint8_t) crc};

	memcpy(out, ARMOR_HEAD, strlen(ARMOR_HEAD));
	o += strlen(ARMOR_HEAD);
	o += b64_encode(data, len, out + o, true);
	out[o++] = '=';
	o += b64_encode(c, 3, out + o, false);
	out[o++] = '\n';
	memcpy(out + o, ARMOR_TAIL, strlen(ARMOR_TAIL));
	o += strlen(ARMOR_TAIL);
	return o;
}
