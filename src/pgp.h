/*-------------------------------------------------------------------------
 *
 * pgp.h
 *	  OpenPGP symmetric encryption (RFC 4880) in the exact form contrib's
 *	  pgcrypto reads and writes: a symmetric-key encrypted session key
 *	  packet (tag 3) followed by a symmetrically encrypted integrity
 *	  protected data packet (tag 18) holding a literal data packet (tag 11)
 *	  and the modification detection code packet (tag 19).
 *
 * Pure functions over caller-owned buffers: no PostgreSQL headers, no
 * palloc, no ereport.  Every OpenSSL handle is freed before a function
 * returns, so they can be called from a backend (nothing can longjmp out of
 * them) and from the fuzzer without a server.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COURIER_PGP_H
#define COURIER_PGP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* OpenPGP algorithm ids (RFC 4880 9.2 and 9.4) */
#define PGP_CIPHER_AES128	7
#define PGP_CIPHER_AES192	8
#define PGP_CIPHER_AES256	9
#define PGP_DIGEST_MD5		1
#define PGP_DIGEST_SHA1		2
#define PGP_DIGEST_SHA256	8
#define PGP_DIGEST_SHA384	9
#define PGP_DIGEST_SHA512	10

/* Literal data types */
#define PGP_LITERAL_BINARY	'b'
#define PGP_LITERAL_TEXT	't'

/*
 * Not exported from the shared library: the server loads modules with
 * RTLD_GLOBAL, and pgcrypto has functions of the same names (pgp_encrypt,
 * pgp_decrypt), which would otherwise resolve to ours once pg_courier is
 * loaded first.
 */
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility push(hidden)
#endif

typedef enum PgpResult
{
	PGP_OK = 0,
	PGP_CORRUPT,				/* wrong key or corrupt data: the one uniform
								 * answer for anything that fails before the
								 * integrity check passed */
	PGP_UNSUPPORTED,			/* authentic, but uses a feature we lack
								 * (compression) */
	PGP_BAD_OPTIONS,			/* pgp_encrypt: options out of range */
	PGP_NO_SPACE,				/* output buffer too small */
	PGP_INTERNAL				/* OpenSSL or the random source failed */
} PgpResult;

/* How pgp_encrypt writes a message; see pgp_options_machine(). */
typedef struct PgpOptions
{
	int			cipher_algo;	/* PGP_CIPHER_AES* */
	int			s2k_mode;		/* 0 simple, 1 salted, 3 iterated and salted */
	int			s2k_digest_algo;	/* PGP_DIGEST_* */
	int			s2k_count;		/* mode 3: the encoded count byte, 0..255 */
	bool		use_sess_key;	/* random session key in the tag 3 packet */
	char		literal_type;	/* PGP_LITERAL_* */
} PgpOptions;

extern void pgp_options_machine(PgpOptions *opts);
extern bool pgp_cipher_supported(int cipher_algo);
extern bool pgp_digest_supported(int digest_algo);
extern size_t pgp_encrypted_size(const PgpOptions *opts, size_t len);
extern PgpResult pgp_encrypt(const PgpOptions *opts, const uint8_t *pass, size_t passlen,
							 const uint8_t *data, size_t len,
							 uint8_t *out, size_t outcap, size_t *outlen);
extern PgpResult pgp_decrypt(const uint8_t *pass, size_t passlen,
							 const uint8_t *msg, size_t len,
							 uint8_t *out, size_t outcap, size_t *outlen,
							 char *literal_type);
extern size_t pgp_armor_size(size_t len);
extern size_t pgp_armor(const uint8_t *data, size_t len, char *out);

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility pop
#endif

#endif							/* COURIER_PGP_H */
