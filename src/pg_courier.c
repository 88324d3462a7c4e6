/*-------------------------------------------------------------------------
 *
 * pg_courier.c
 *	  Module load: defines the courier.* settings and reserves their prefix,
 *	  registers the cache invalidation callbacks.
 *
 * pg_courier needs no shared_preload_libraries: all shared state lives in
 * tables and in the regular lock manager.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/guc.h"
#include "utils/inval.h"

#include "courier.h"

PG_MODULE_MAGIC;

/* courier.max_wait: the longest wait a receive may ask for, in milliseconds */
int			courier_max_wait_ms = 20000;

/* courier.keyring_file: the file of master keys of payload encryption (crypto.c) */
char	   *courier_keyring_file = NULL;

void		_PG_init(void);

void
_PG_init(void)
{
	DefineCustomIntVariable("courier.max_wait",
							"Longest wait a courier.receive call may ask for.",
							"A waiting receive holds a snapshot, which keeps VACUUM from removing "
							"rows deleted after it started.",
							&courier_max_wait_ms,
							20000, 0, 3600 * 1000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomStringVariable("courier.keyring_file",
							   "File holding the master keys that wrap pg_courier's data keys.",
							   "Must lie outside the data directory and be readable by the "
							   "server's OS user only.",
							   &courier_keyring_file,
							   "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   crypto_check_keyring_file, crypto_assign_keyring_file, NULL);
	crypto_init();
	CacheRegisterRelcacheCallback(courier_relcache_callback, (Datum) 0);
	CacheRegisterRelcacheCallback(courier_topic_relcache_callback, (Datum) 0);
	RegisterXactCallback(wait_xact_callback, NULL);
	RegisterSubXactCallback(wait_subxact_callback, NULL);
#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("courier");
#else
	EmitWarningsOnPlaceholders("courier");
#endif
}
