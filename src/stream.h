/*-------------------------------------------------------------------------
 *
 * stream.h
 *	  Declarations shared by stream.c (administration, append, the stream
 *	  cache) and streamread.c (consumer groups, read, commit, seek).
 *
 *-------------------------------------------------------------------------
 */
#ifndef COURIER_STREAM_H
#define COURIER_STREAM_H

#include "courier.h"

/* Stream privileges, as a bit mask; admin implies the others. */
#define STREAM_PRIV_APPEND		0x01
#define STREAM_PRIV_READ		0x02
#define STREAM_PRIV_ADMIN		0x04

#define STREAM_MAX_PARTITIONS	256
/* segments per retention, and slots (data tables) per stream: see 50_stream.sql */
#define STREAM_SEGMENTS			4
#define STREAM_SLOTS			6

/*
 * A position is (top-level xid8 << STREAM_XID_SHIFT) + n, n < 2^20 counting
 * the rows one transaction appended.  xid8 must stay below 2^43 (an epoch
 * below 2048) for positions to fit a positive bigint.
 */
#define STREAM_XID_SHIFT		20
#define STREAM_MAX_PER_XACT		(INT64CONST(1) << STREAM_XID_SHIFT)
#define STREAM_MAX_XID8			(INT64CONST(1) << (63 - STREAM_XID_SHIFT))

/* First position of transaction xid, and the transaction of a position. */
#define STREAM_XACT_START(xid)	((int64) (xid) << STREAM_XID_SHIFT)
#define STREAM_XACT_OF(pos)		((int64) (pos) >> STREAM_XID_SHIFT)

/* Cached plans of one stream; appends have one per slot (they insert into the slot's table). */
typedef enum StreamPlan
{
	SPLAN_READ,
	SPLAN_SEEK_TIME,
	SPLAN_APPEND,
	SPLAN_APPEND_BATCH = SPLAN_APPEND + STREAM_SLOTS,
	NUM_STREAM_PLANS = SPLAN_APPEND_BATCH + STREAM_SLOTS
} StreamPlan;

/* A consumer group, as cached with its stream. */
typedef struct StreamGroup
{
	char		name[COURIER_MAX_NAME + 4];
	int32		group_id;
} StreamGroup;

/* One stream, as cached by a backend (stream.c). */
typedef struct CourierStream
{
	char		name[COURIER_MAX_NAME + 4];	/* hash key */
	int32		stream_id;
	int32		partitions;
	int64		segment_us;		/* retention / STREAM_SEGMENTS */
	int32		max_message_size;
	int			ngrants;
	CourierGrant *grants;		/* in CacheMemoryContext */
	int			ngroups;
	StreamGroup *groups;		/* in CacheMemoryContext */
	SPIPlanPtr	plans[NUM_STREAM_PLANS];
	uint32		next_partition; /* round robin of appends without a key */
} CourierStream;

/* stream.c */
extern CourierStream *stream_lookup(text *name, bool missing_ok);
extern void stream_check_privilege(CourierCall *call, CourierStream *stream, int privilege);
extern SPIPlanPtr stream_plan(CourierStream *stream, int which, int slot,
							  const char *sql_format, int nargs, Oid *argtypes);
extern int32 stream_group_id(CourierStream *stream, text *group, bool missing_ok);
extern void stream_check_name(const char *what, text *name);

#endif							/* COURIER_STREAM_H */
