/*-------------------------------------------------------------------------
 *
 * pg_courier.c
 *	  Module load: registers the cache invalidation callback and reserves
 *	  the courier.* settings prefix.
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

void		_PG_init(void);

void
_PG_init(void)
{
	CacheRegisterRelcacheCallback(courier_relcache_callback, (Datum) 0);
#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("courier");
#else
	EmitWarningsOnPlaceholders("courier");
#endif
}
