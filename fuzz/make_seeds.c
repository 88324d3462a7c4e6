/*-------------------------------------------------------------------------
 *
 * make_seeds.c
 *	  Writes a seed corpus for pgp_fuzz.c into the directory given: real
 *	  ciphertexts of pgp.c over the option matrix (AES-128/192/256, S2K
 *	  modes 0/1/3, SHA-1/SHA-256, with and without a session key) and sizes
 *	  around the 16 KiB chunk, each prefixed with pgp_fuzz's "decrypt"
 *	  selector byte, plus round-trip seeds.  pgcrypto-made ciphertexts are
 *	  in fuzz/corpus/, committed.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgp.h"

#define PASSPHRASE "pg_courier fuzz corpus passphrase"

static void
write_seed(const char *dir, const char *name, uint8_t selector, const uint8_t *data, size_t len)
{
	char		path[4096];
	FILE	   *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (f == NULL || fwrite(&selector, 1, 1, f) != 1 ||
		(len > 0 && fwrite(data, 1, len, f) != len) || fclose(f) != 0)
	{
		perror(path);
		exit(1);
	}
}

int
main(int argc, char **argv)
{
	static const int ciphers[] = {PGP_CIPHER_AES128, PGP_CIPHER_AES192, PGP_CIPHER_AES256};
	static const int modes[] = {0, 1, 3};
	static const int digests[] = {PGP_DIGEST_SHA1, PGP_DIGEST_SHA256};
	static const size_t sizes[] = {0, 1, 100, 16331, 16378, 16383, 16384, 16385};
	uint8_t    *plain = malloc(16385 + 2);
	int			n = 0;

	if (argc != 2)
	{
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	for (size_t i = 0; i < 16385 + 2; i++)
		plain[i] = (uint8_t) (i * 7 + 3);
	for (int c = 0; c < 3; c++)
		for (int m = 0; m < 3; m++)
			for (int d = 0; d < 2; d++)
				for (int k = 0; k < 2; k++)
				{
					size_t		len = sizes[n % 8];
					PgpOptions	opts;
					size_t		cap;
					uint8_t    *msg;
					size_t		msglen;
					char		name[64];

					pgp_options_machine(&opts);
					opts.cipher_algo = ciphers[c];
					opts.s2k_mode = modes[m];
					opts.s2k_digest_algo = digests[d];
					opts.use_sess_key = k;
					opts.s2k_count = 0;
					cap = pgp_encrypted_size(&opts, len);
					msg = malloc(cap);
					if (pgp_encrypt(&opts, (const uint8_t *) PASSPHRASE, strlen(PASSPHRASE),
									plain, len, msg, cap, &msglen) != PGP_OK)
					{
						fprintf(stderr, "make_seeds: encrypt failed\n");
						return 1;
					}
					snprintf(name, sizeof(name), "courier-%d-%d-%d-%d-%zu", ciphers[c],
							 modes[m], digests[d], k, len);
					write_seed(argv[1], name, 0, msg, msglen);
					free(msg);
					n++;
				}
	/* round trips: selector 1, options byte, then the plaintext */
	for (int i = 0; i < 8; i++)
	{
		char		name[64];

		plain[0] = (uint8_t) (i * 37);
		snprintf(name, sizeof(name), "roundtrip-%zu", sizes[i]);
		write_seed(argv[1], name, 1, plain, sizes[i] + 1);
	}
	printf("make_seeds: %d ciphertexts, 8 round trips\n", n);
	free(plain);
	return 0;
}
