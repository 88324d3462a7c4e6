/*-------------------------------------------------------------------------
 *
 * streamread.c
 *	  Consumer groups of streams: courier.create_group(), drop_group(),
 *	  seek(), read() and commit().
 *
 * Never skipping a message.  Positions come from the appending
 * transaction's xid (stream.h), so transactions commit out of position
 * order.  A group's cursor on one partition is therefore not one position
 * but a position 'pos' plus a list 'pending' of transactions below it that
 * were still running when the cursor was made: for each such transaction
 * the next position of it not yet read ("np"; its xid is np >> 20).  A row
 * has been read by the cursor iff
 *		row.position <= pos, and the row's transaction is not pending, or
 *		it is pending and row.position < its np.
 * A read runs one query per partition under one MVCC snapshot S of its own:
 * rows after pos, plus rows of pending transactions from their np up to
 * pos, in position order, LIMIT n.  Then the new cursor is
 *		pos'	 = the highest position returned, if above pos, else pos;
 *		pending' = every transaction in S.xip up to pos' (a transaction that
 *				   was pending keeps its np, a new one starts at its first
 *				   position), plus a finished pending transaction whose rows
 *				   the LIMIT cut off, with np after the last row returned.
 * Every transaction not in S.xip and below S.xmax has finished, so its rows
 * are in S or never will be; rows above pos' are still ahead; so whatever
 * the cursor counts as read was returned by this or an earlier read.  The
 * isolation spec stream_out_of_order proves it.  The pending list is never
 * longer than the number of transactions running at once.
 *
 * Commit.  Each partition's row in courier.stream_cursor holds the
 * committed cursor and the delivered one (what the holder's reads returned
 * since).  read() first commits what the same consumer's previous read
 * delivered ("commit on next read"); commit() does the same on demand.  A
 * consumer that stops between a read and the next commit has its delivery
 * read again by the next holder: at-least-once.  Reading, processing and
 * committing in one transaction gives exactly-once for work done in the
 * database.
 *
 * Leases and rebalancing.  A partition is held by at most one consumer of
 * a group (holder, lease_until).  Each read renews the consumer's leases
 * and registers the consumer as a member until its lease ends.  With M live
 * members and P partitions, the fair share is ceil(P / M): a consumer that
 * holds more gives the highest-numbered extras up (after committing them);
 * one that holds fewer takes free partitions (no holder, or lease ended),
 * lowest-numbered first, up to its share.  Taking a partition discards the
 * old holder's uncommitted delivery and bumps its generation; the old
 * holder no longer matches "holder = me" and can neither commit nor read
 * it.  Partition rows are locked FOR UPDATE SKIP LOCKED when taken, and by
 * the renewal UPDATE of their holder, so consumers never wait for each
 * other; a row stays locked until the reader's transaction ends.
 *
 * Waiting.  read(..., wait => ...) waits on the stream's wait tag
 * (wait.c, id -stream_id); every append wakes it at commit.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"

#include "stream.h"

#define READ_COLUMNS			8
#define STREAM_MAX_READ			10000
#define STREAM_MAX_LEASE_US		(USECS_PER_HOUR)

/* One partition's cursor: position read up to and the transactions still owed. */
typedef struct StreamCursor
{
	int32		part;
	int64		pos;
	int64	   *pending;		/* np of each pending transaction, ascending */
	int			npending;
	bool		changed;
} StreamCursor;

/* A snapshot's running transactions as xid8, sorted. */
typedef struct SnapXids
{
	Snapshot	snap;
	uint64		xmax;
	uint64	   *xip;
	int			nxip;
} SnapXids;

static int
cmp_uint64(const void *a, const void *b)
{
	uint64		x = *(const uint64 *) a;
	uint64		y = *(const uint64 *) b;

	return (x > y) - (x < y);
}

/* xid as xid8, relative to next (as xid8funcs.c widens snapshot xids). */
static uint64
widen_xid(TransactionId xid, FullTransactionId next)
{
	uint32		epoch = EpochFromFullTransactionId(next);

	if (xid > XidFromFullTransactionId(next) && epoch > 0)
		epoch--;
	return ((uint64) epoch << 32) | xid;
}

/* Takes and registers a fresh snapshot (READ COMMITTED) and widens its xids. */
static void
snap_take(SnapXids *sx)
{
	FullTransactionId next;

	CommandCounterIncrement();
	sx->snap = RegisterSnapshot(GetTransactionSnapshot());
	next = ReadNextFullTransactionId();
	sx->xmax = widen_xid(sx->snap->xmax, next);
	sx->nxip = sx->snap->xcnt;
	sx->xip = palloc(sizeof(uint64) * (sx->nxip + 1));
	for (int i = 0; i < sx->nxip; i++)
		sx->xip[i] = widen_xid(sx->snap->xip[i], next);
	qsort(sx->xip, sx->nxip, sizeof(uint64), cmp_uint64);
}

static void
snap_release(SnapXids *sx)
{
	UnregisterSnapshot(sx->snap);
	pfree(sx->xip);
}

static bool
snap_running(SnapXids *sx, uint64 xid)
{
	return bsearch(&xid, sx->xip, sx->nxip, sizeof(uint64), cmp_uint64) != NULL;
}

/* The pending list of a cursor made at S with position pos, owing nothing yet. */
static void
cursor_from_snapshot(StreamCursor *cur, SnapXids *sx, int64 pos)
{
	cur->pos = pos;
	cur->npending = 0;
	cur->pending = palloc(sizeof(int64) * (sx->nxip + 1));
	for (int i = 0; i < sx->nxip; i++)
		if ((int64) sx->xip[i] <= STREAM_XACT_OF(pos))
			cur->pending[cur->npending++] = STREAM_XACT_START(sx->xip[i]);
}

/* Copies an int8[] datum into a palloc'd array. */
static int64 *
int8_array_values(Datum array, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	int64	   *result;

	deconstruct_array(DatumGetArrayTypeP(array), INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &elems, &nulls, n);
	result = palloc(sizeof(int64) * (*n + 1));
	for (int i = 0; i < *n; i++)
		result[i] = DatumGetInt64(elems[i]);
	return result;
}

/*
 * The cursor after a read at S that returned rows up to position 'last'
 * ('cut': it returned as many as it asked for, so rows after 'last' may
 * have been left out); see the file header.
 */
static void
cursor_advance(StreamCursor *cur, SnapXids *sx, int64 last, bool cut)
{
	int64		newpos = Max(cur->pos, last);
	int64	   *pending = palloc(sizeof(int64) * (cur->npending + sx->nxip + 1));
	int			n = 0;

	for (int i = 0; i < cur->npending; i++)
	{
		int64		np = cur->pending[i];
		uint64		xid = (uint64) STREAM_XACT_OF(np);
		int64		end = Min(STREAM_XACT_START(xid + 1) - 1, cur->pos);

		if (snap_running(sx, xid))
			pending[n++] = np;
		else if (cut && last < end)
			pending[n++] = Max(np, last + 1);
	}
	/* transactions the position passed while they were running */
	for (int i = 0; i < sx->nxip; i++)
	{
		int64		xid = (int64) sx->xip[i];

		if (xid <= STREAM_XACT_OF(cur->pos) || xid > STREAM_XACT_OF(newpos))
			continue;
		pending[n++] = STREAM_XACT_START(xid);
	}
	/* keep them ordered, for a stable comparison and storage */
	qsort(pending, n, sizeof(int64), cmp_uint64);
	cur->changed = (newpos != cur->pos || n != cur->npending ||
					(n > 0 && memcmp(pending, cur->pending, sizeof(int64) * n) != 0));
	cur->pos = newpos;
	cur->pending = pending;
	cur->npending = n;
}

/* The consumer argument, checked. */
static char *
consumer_arg(FunctionCallInfo fcinfo, int argno)
{
	text	   *consumer = courier_arg_text(fcinfo, argno, "consumer");
	int			len = VARSIZE_ANY_EXHDR(consumer);

	if (len < 1 || len > 200)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("consumer name must have 1 to 200 characters")));
	return text_to_cstring(consumer);
}

/*
 * Where a seek or a new group starts: fills cur (one per partition) from
 * the argument 'to' of type totype: text 'earliest' or 'latest', a
 * timestamptz (the first message appended at or after it), or a bigint
 * position (the next read starts there).
 */
static void
start_cursors(CourierStream *stream, Oid totype, Datum to, StreamCursor *curs, int ncurs)
{
	SnapXids	sx;

	snap_take(&sx);
	if (totype == TEXTOID)
	{
		char	   *s = TextDatumGetCString(to);
		int64		pos;

		if (strcmp(s, "earliest") == 0)
			pos = 0;
		else if (strcmp(s, "latest") == 0)
			pos = STREAM_XACT_START(sx.xmax) - 1;
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid stream position \"%s\"", s),
					 errhint("Use 'earliest', 'latest', a timestamp or a position.")));
		for (int i = 0; i < ncurs; i++)
			cursor_from_snapshot(&curs[i], &sx, pos);
	}
	else if (totype == INT8OID)
	{
		int64		pos = DatumGetInt64(to);

		if (pos < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("stream position must not be negative")));
		/* exactly from that position on: earlier transactions are not owed */
		for (int i = 0; i < ncurs; i++)
		{
			curs[i].pos = pos - 1;
			curs[i].pending = NULL;
			curs[i].npending = 0;
		}
	}
	else
	{
		static Oid	argtypes[1] = {TIMESTAMPTZOID};
		SPIPlanPtr	plan;
		Datum		args[1];
		int			ret;

		for (int i = 0; i < ncurs; i++)
			cursor_from_snapshot(&curs[i], &sx, STREAM_XACT_START(sx.xmax) - 1);
		/* a scan of the stream: seeking to a time is rare */
		plan = stream_plan(stream, SPLAN_SEEK_TIME, 0,
						   "SELECT m.part, pg_catalog.min(m.position) FROM courier.s_%1$d m"
						   " WHERE m.appended_at >= $1 GROUP BY m.part",
						   1, argtypes);
		args[0] = to;
		ret = SPI_execute_snapshot(plan, args, NULL, sx.snap, InvalidSnapshot, true, false, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "pg_courier: unexpected SPI result %s", SPI_result_code_string(ret));
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			bool		isnull;
			int32		part = DatumGetInt16(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull));
			int64		first = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2, &isnull));

			for (int i = 0; i < ncurs; i++)
				if (curs[i].part == part)
				{
					pfree(curs[i].pending);
					cursor_from_snapshot(&curs[i], &sx, first - 1);
				}
		}
		SPI_freetuptable(SPI_tuptable);
	}
	snap_release(&sx);
}

/* The partition argument of seek: NULL for all, else 1..partitions. */
static int32
partition_arg(FunctionCallInfo fcinfo, int argno, CourierStream *stream)
{
	int32		part;

	if (PG_NARGS() <= argno || PG_ARGISNULL(argno))
		return 0;
	part = PG_GETARG_INT32(argno);
	if (part < 1 || part > stream->partitions)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("partition %d of stream \"%s\" does not exist", part, stream->name),
				 errdetail("The stream has partitions 1 to %d.", stream->partitions)));
	return part;
}

/* Sets committed and delivered cursor of one partition (seek, create_group). */
static void
store_cursor(int32 group_id, StreamCursor *cur, bool insert)
{
	static SPIPlanPtr plans[2] = {NULL, NULL};
	static Oid	argtypes[4] = {INT4OID, INT4OID, INT8OID, INT8ARRAYOID};
	Datum		args[4];

	if (plans[insert] == NULL)
	{
		plans[insert] = SPI_prepare(insert ?
									"INSERT INTO courier.stream_cursor (group_id, part,"
									" committed_pos, committed_pending, delivered_pos,"
									" delivered_pending) VALUES ($1, $2, $3, $4, $3, $4)" :
									"UPDATE courier.stream_cursor SET committed_pos = $3,"
									" committed_pending = $4, delivered_pos = $3,"
									" delivered_pending = $4, committed_at = pg_catalog.now()"
									" WHERE group_id = $1 AND part = $2",
									4, argtypes);
		if (plans[insert] == NULL || SPI_keepplan(plans[insert]) != 0)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	}
	args[0] = Int32GetDatum(group_id);
	args[1] = Int32GetDatum(cur->part);
	args[2] = Int64GetDatum(cur->pos);
	args[3] = courier_int8_array(cur->pending, cur->npending);
	(void) courier_execute(plans[insert], args, NULL, false,
						   insert ? SPI_OK_INSERT : SPI_OK_UPDATE);
}

/*
 * courier.create_group(stream_name text, group_name text,
 *						start_at text|timestamptz|bigint) RETURNS void
 *		Create a consumer group that starts at 'earliest', 'latest' (the
 *		default), a time or a position.  Needs read.
 */
PG_FUNCTION_INFO_V1(courier_create_group);
Datum
courier_create_group(PG_FUNCTION_ARGS)
{
	static Oid	argtypes[2] = {INT4OID, TEXTOID};
	text	   *name = courier_arg_text(fcinfo, 0, "stream name");
	text	   *group = courier_arg_text(fcinfo, 1, "group name");
	Oid			totype = get_fn_expr_argtype(fcinfo->flinfo, 2);
	CourierCall call;
	CourierStream *stream;
	StreamCursor *curs;
	Datum		args[2];
	bool		isnull[2] = {false, false};
	int32		group_id;

	courier_arg_notnull(fcinfo, 2, "start_at");
	stream_check_name("group", group);
	courier_enter(&call);
	stream = stream_lookup(name, false);
	stream_check_privilege(&call, stream, STREAM_PRIV_READ);
	if (stream_group_id(stream, group, true) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("consumer group \"%s\" of stream \"%s\" already exists",
						text_to_cstring(group), stream->name)));
	args[0] = Int32GetDatum(stream->stream_id);
	args[1] = PointerGetDatum(group);
	group_id = DatumGetInt32(courier_run_internal("WITH g AS (INSERT INTO courier.stream_group"
												 " (stream_id, group_name) VALUES ($1, $2)"
												 " RETURNING group_id) SELECT group_id FROM g",
												 2, argtypes, args, isnull));
	curs = palloc0(sizeof(StreamCursor) * stream->partitions);
	for (int i = 0; i < stream->partitions; i++)
		curs[i].part = i + 1;
	start_cursors(stream, totype, PG_GETARG_DATUM(2), curs, stream->partitions);
	for (int i = 0; i < stream->partitions; i++)
		store_cursor(group_id, &curs[i], true);
	courier_leave(&call);
	PG_RETURN_VOID();
}

/*
 * courier.drop_group(stream_name text, group_name text) RETURNS void
 *		Forget a consumer group with its positions.  Needs admin.
 */
PG_FUNCTION_INFO_V1(courier_drop_group);
Datum
courier_drop_group(PG_FUNCTION_ARGS)
{
	static Oid	argtypes[1] = {INT4OID};
	text	   *name = courier_arg_text(fcinfo, 0, "stream name");
	text	   *group = courier_arg_text(fcinfo, 1, "group name");
	CourierCall call;
	CourierStream *stream;
	Datum		args[1];
	bool		isnull[1] = {false};

	courier_enter(&call);
	stream = stream_lookup(name, false);
	stream_check_privilege(&call, stream, STREAM_PRIV_ADMIN);
	args[0] = Int32GetDatum(stream_group_id(stream, group, false));
	(void) courier_run_internal("WITH d AS (DELETE FROM courier.stream_group WHERE group_id = $1"
							   " RETURNING 1) SELECT count(*) FROM d",
							   1, argtypes, args, isnull);
	courier_leave(&call);
	PG_RETURN_VOID();
}

/*
 * courier.seek(stream_name text, group_name text,
 *				to text|timestamptz|bigint, partition integer) RETURNS void
 *		Move a group's committed position (of one partition, or of all) to
 *		'earliest', 'latest', a time or a position; whoever holds the
 *		partition reads from there next.  Needs read.  Waits for a reader of
 *		the partition whose transaction is open.
 */
PG_FUNCTION_INFO_V1(courier_seek);
Datum
courier_seek(PG_FUNCTION_ARGS)
{
	text	   *name = courier_arg_text(fcinfo, 0, "stream name");
	text	   *group = courier_arg_text(fcinfo, 1, "group name");
	Oid			totype = get_fn_expr_argtype(fcinfo->flinfo, 2);
	CourierCall call;
	CourierStream *stream;
	StreamCursor *curs;
	int32		group_id;
	int32		part;
	int			ncurs;

	courier_arg_notnull(fcinfo, 2, "to");
	courier_enter(&call);
	stream = stream_lookup(name, false);
	stream_check_privilege(&call, stream, STREAM_PRIV_READ);
	group_id = stream_group_id(stream, group, false);
	part = partition_arg(fcinfo, 3, stream);
	ncurs = part > 0 ? 1 : stream->partitions;
	curs = palloc0(sizeof(StreamCursor) * ncurs);
	for (int i = 0; i < ncurs; i++)
		curs[i].part = part > 0 ? part : i + 1;
	start_cursors(stream, totype, PG_GETARG_DATUM(2), curs, ncurs);
	for (int i = 0; i < ncurs; i++)
		store_cursor(group_id, &curs[i], false);
	courier_leave(&call);
	PG_RETURN_VOID();
}

/* The statements of read() and commit(), shared by all streams. */
typedef enum ReadPlan
{
	RPLAN_MEMBER,
	RPLAN_RENEW,
	RPLAN_RELEASE,
	RPLAN_TAKE,
	RPLAN_DELIVERED,
	RPLAN_COMMIT,
	NUM_READ_PLANS
} ReadPlan;

static SPIPlanPtr read_plans[NUM_READ_PLANS];

static SPIPlanPtr
read_plan(ReadPlan which, const char *sql, int nargs, Oid *argtypes)
{
	if (read_plans[which] == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		read_plans[which] = plan;
	}
	return read_plans[which];
}

/* Appends the cursors a RETURNING part, delivered_pos, delivered_pending gave to curs. */
static void
collect_cursors(StreamCursor *curs, int *ncurs)
{
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		StreamCursor *cur = &curs[(*ncurs)++];
		bool		isnull;

		cur->part = DatumGetInt32(SPI_getbinval(tuple, desc, 1, &isnull));
		cur->pos = DatumGetInt64(SPI_getbinval(tuple, desc, 2, &isnull));
		cur->pending = int8_array_values(SPI_getbinval(tuple, desc, 3, &isnull), &cur->npending);
		cur->changed = false;
	}
	SPI_freetuptable(SPI_tuptable);
}

static int
cmp_cursor_part(const void *a, const void *b)
{
	return ((const StreamCursor *) a)->part - ((const StreamCursor *) b)->part;
}

/*
 * Commits the consumer's previous delivery, renews its leases, and brings
 * its partitions to its fair share; returns the partitions it now holds,
 * in curs (room for all partitions).  See the file header.
 */
static int
assign_partitions(CourierStream *stream, int32 group_id, text *consumer, TimestampTz now,
				  int64 lease_us, StreamCursor *curs)
{
	static Oid	member_types[4] = {INT4OID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	static Oid	renew_types[4] = {INT4OID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	static Oid	release_types[2] = {INT4OID, INT4ARRAYOID};
	static Oid	take_types[5] = {INT4OID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT4OID};
	SPIPlanPtr	plan;
	Datum		args[5];
	int			ncurs = 0;
	int64		members;
	int			share;
	bool		isnull;

	args[0] = Int32GetDatum(group_id);
	args[1] = PointerGetDatum(consumer);
	args[2] = TimestampTzGetDatum(now);
	args[3] = TimestampTzGetDatum(now + lease_us);

	plan = read_plan(RPLAN_MEMBER,
					 "WITH me AS ("
					 " INSERT INTO courier.stream_member AS m (group_id, consumer, last_seen,"
					 "  expires_at) VALUES ($1, $2, $3, $4)"
					 " ON CONFLICT (group_id, consumer) DO UPDATE"
					 "  SET last_seen = EXCLUDED.last_seen, expires_at = EXCLUDED.expires_at)"
					 " SELECT pg_catalog.count(*) + 1 FROM courier.stream_member m"
					 "  WHERE m.group_id = $1 AND m.expires_at > $3 AND m.consumer <> $2",
					 4, member_types);
	(void) courier_execute(plan, args, NULL, false, SPI_OK_SELECT);
	members = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_freetuptable(SPI_tuptable);
	share = (int) ((stream->partitions + members - 1) / members);

	plan = read_plan(RPLAN_RENEW,
					 "UPDATE courier.stream_cursor c"
					 "   SET committed_pos = c.delivered_pos,"
					 "       committed_pending = c.delivered_pending,"
					 "       committed_at = CASE WHEN c.committed_pos <> c.delivered_pos"
					 "                        OR c.committed_pending <> c.delivered_pending"
					 "                      THEN $3 ELSE c.committed_at END,"
					 "       lease_until = $4"
					 " WHERE c.group_id = $1 AND c.holder = $2"
					 " RETURNING c.part, c.delivered_pos, c.delivered_pending",
					 4, renew_types);
	(void) courier_execute(plan, args, NULL, false, SPI_OK_UPDATE_RETURNING);
	collect_cursors(curs, &ncurs);
	qsort(curs, ncurs, sizeof(StreamCursor), cmp_cursor_part);

	if (ncurs > share)
	{
		Datum	   *parts = palloc(sizeof(Datum) * (ncurs - share));

		for (int i = share; i < ncurs; i++)
			parts[i - share] = Int32GetDatum(curs[i].part);
		plan = read_plan(RPLAN_RELEASE,
						 "UPDATE courier.stream_cursor SET holder = NULL, lease_until = NULL"
						 " WHERE group_id = $1 AND part = ANY ($2)",
						 2, release_types);
		args[1] = PointerGetDatum(construct_array(parts, ncurs - share, INT4OID, 4, true,
												  TYPALIGN_INT));
		(void) courier_execute(plan, args, NULL, false, SPI_OK_UPDATE);
		ncurs = share;
	}
	else if (ncurs < share)
	{
		plan = read_plan(RPLAN_TAKE,
						 "UPDATE courier.stream_cursor c"
						 "   SET holder = $2, lease_until = $4, generation = c.generation + 1,"
						 "       delivered_pos = c.committed_pos,"
						 "       delivered_pending = c.committed_pending"
						 "  FROM (SELECT f.part FROM courier.stream_cursor f"
						 "         WHERE f.group_id = $1"
						 "           AND (f.holder IS NULL OR f.lease_until <= $3)"
						 "         ORDER BY f.part LIMIT $5 FOR UPDATE SKIP LOCKED) free"
						 " WHERE c.group_id = $1 AND c.part = free.part"
						 " RETURNING c.part, c.delivered_pos, c.delivered_pending",
						 5, take_types);
		args[4] = Int32GetDatum(share - ncurs);
		(void) courier_execute(plan, args, NULL, false, SPI_OK_UPDATE_RETURNING);
		collect_cursors(curs, &ncurs);
		qsort(curs, ncurs, sizeof(StreamCursor), cmp_cursor_part);
	}
	return ncurs;
}

/* What one read() call needs across partitions and waits. */
typedef struct ReadState
{
	CourierStream *stream;
	int			max_messages;
	int			got;
	HeapTuple  *rows;			/* [max_messages], in per-query memory */
	MemoryContext row_context;
	TupleDesc	tupdesc;
} ReadState;

static Datum
copy_if_external(Datum value)
{
	if (VARATT_IS_EXTERNAL(DatumGetPointer(value)))
		return PointerGetDatum(detoast_external_attr((struct varlena *) DatumGetPointer(value)));
	return value;
}

/*
 * Reads the next rows of one partition under snapshot sx into the result
 * and advances its cursor (in memory).
 */
static void
read_partition(ReadState *rs, StreamCursor *cur, SnapXids *sx)
{
	static Oid	argtypes[4] = {INT2OID, INT8OID, INT8OID, INT8ARRAYOID};
	int			want = rs->max_messages - rs->got;
	SPIPlanPtr	plan;
	Datum		args[4];
	int			ret;
	int64		last = cur->pos;
	uint64		n;

	plan = stream_plan(rs->stream, SPLAN_READ, 0,
					   "SELECT c.part, c.position, c.key, c.body, c.body_text, c.body_bytes,"
					   "       c.attributes, c.appended_at FROM ("
					   " (SELECT m.part, m.position, m.key, m.body, m.body_text, m.body_bytes,"
					   "         m.attributes, m.appended_at FROM courier.s_%1$d m"
					   "   WHERE m.part = $1 AND m.position > $2 ORDER BY m.position LIMIT $3)"
					   " UNION ALL"
					   " (SELECT l.* FROM pg_catalog.unnest($4) AS u(np),"
					   "   LATERAL (SELECT m.part, m.position, m.key, m.body, m.body_text,"
					   "                   m.body_bytes, m.attributes, m.appended_at"
					   "              FROM courier.s_%1$d m"
					   "             WHERE m.part = $1 AND m.position >= u.np"
					   "               AND m.position < ((u.np >> 20) + 1) << 20"
					   "               AND m.position <= $2"
					   "             ORDER BY m.position LIMIT $3) l)) c"
					   " ORDER BY c.position LIMIT $3",
					   4, argtypes);
	args[0] = Int16GetDatum((int16) cur->part);
	args[1] = Int64GetDatum(cur->pos);
	args[2] = Int64GetDatum((int64) want);
	args[3] = courier_int8_array(cur->pending, cur->npending);
	ret = SPI_execute_snapshot(plan, args, NULL, sx->snap, InvalidSnapshot, true, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "pg_courier: unexpected SPI result %s", SPI_result_code_string(ret));
	n = SPI_processed;
	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Datum		values[READ_COLUMNS];
		bool		nulls[READ_COLUMNS];
		MemoryContext oldcontext;

		for (int c = 0; c < READ_COLUMNS; c++)
		{
			values[c] = SPI_getbinval(tuple, desc, c + 1, &nulls[c]);
			if (!nulls[c] && c >= 2 && c <= 6)
				values[c] = copy_if_external(values[c]);
		}
		values[0] = Int32GetDatum((int32) DatumGetInt16(values[0]));
		last = DatumGetInt64(values[1]);
		oldcontext = MemoryContextSwitchTo(rs->row_context);
		rs->rows[rs->got++] = heap_form_tuple(rs->tupdesc, values, nulls);
		MemoryContextSwitchTo(oldcontext);
	}
	SPI_freetuptable(SPI_tuptable);
	cursor_advance(cur, sx, last, n == (uint64) want);
}

/*
 * A cursor cannot lie beyond the transactions of this cluster, unless the
 * stream came from another cluster (pg_dump and restore: positions derive
 * from transaction ids) or a seek went to a position not yet reached.
 * Reading on would skip what is appended from now on: refuse.
 */
static void
check_position(CourierStream *stream, text *group, StreamCursor *cur, SnapXids *sx)
{
	if (cur->pos >= 0 && (uint64) STREAM_XACT_OF(cur->pos) >= sx->xmax)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("position of group \"%s\" on partition %d of stream \"%s\" lies ahead of this cluster's transactions",
						text_to_cstring(group), cur->part, stream->name),
				 errdetail("Stream positions derive from transaction ids; a stream restored from a dump into another cluster keeps the old ones."),
				 errhint("Seek the group to a position that exists, or recreate the stream in this cluster.")));
}

/* Writes the delivered cursors that changed. */
static void
store_delivered(int32 group_id, text *consumer, StreamCursor *curs, int ncurs)
{
	static Oid	argtypes[5] = {INT4OID, INT4OID, INT8OID, INT8ARRAYOID, TEXTOID};
	SPIPlanPtr	plan = read_plan(RPLAN_DELIVERED,
								 "UPDATE courier.stream_cursor"
								 "   SET delivered_pos = $3, delivered_pending = $4"
								 " WHERE group_id = $1 AND part = $2 AND holder = $5",
								 5, argtypes);
	Datum		args[5];

	args[0] = Int32GetDatum(group_id);
	args[4] = PointerGetDatum(consumer);
	for (int i = 0; i < ncurs; i++)
	{
		if (!curs[i].changed)
			continue;
		args[1] = Int32GetDatum(curs[i].part);
		args[2] = Int64GetDatum(curs[i].pos);
		args[3] = courier_int8_array(curs[i].pending, curs[i].npending);
		(void) courier_execute(plan, args, NULL, false, SPI_OK_UPDATE);
	}
}

/*
 * courier.read(stream_name text, group_name text, consumer text,
 *				max_messages integer, lease interval, wait interval)
 *	 RETURNS TABLE (partition integer, position bigint, key text, body jsonb,
 *					body_text text, body_bytes bytea, attributes jsonb,
 *					appended_at timestamptz)
 *		Commit what this consumer's previous read returned, take or renew
 *		its partitions for 'lease', and return up to max_messages of their
 *		next messages, each partition's in position order; with wait, wait
 *		up to that long for the first one.  Needs read.
 *
 * Never waits for a lock (partition rows are taken SKIP LOCKED).  Refused
 * under REPEATABLE READ and SERIALIZABLE: it needs a fresh snapshot.
 */
PG_FUNCTION_INFO_V1(courier_read);
Datum
courier_read(PG_FUNCTION_ARGS)
{
	static uint32 rotation = 0;
	text	   *name = courier_arg_text(fcinfo, 0, "stream name");
	text	   *group = courier_arg_text(fcinfo, 1, "group name");
	text	   *consumer;
	ReadState	rs;
	int64		lease_us;
	int64		wait_us = 0;
	Tuplestorestate *tupstore;
	CourierCall call;
	StreamCursor *curs;
	int			ncurs;
	int32		group_id;
	TimestampTz now;
	TimestampTz deadline;

	memset(&rs, 0, sizeof(rs));
	(void) consumer_arg(fcinfo, 2);
	consumer = PG_GETARG_TEXT_PP(2);
	courier_arg_notnull(fcinfo, 3, "max_messages");
	rs.max_messages = PG_GETARG_INT32(3);
	if (rs.max_messages < 1 || rs.max_messages > STREAM_MAX_READ)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_messages must be between 1 and %d", STREAM_MAX_READ)));
	courier_arg_notnull(fcinfo, 4, "lease");
	lease_us = courier_interval_usecs(PG_GETARG_INTERVAL_P(4), "lease", STREAM_MAX_LEASE_US);
	if (!PG_ARGISNULL(5))
		wait_us = courier_interval_usecs(PG_GETARG_INTERVAL_P(5), "wait",
										 (int64) courier_max_wait_ms * 1000);
	if (wait_us > 0 && wait_us >= lease_us)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("wait must be shorter than lease"),
				 errdetail("A consumer keeps its partitions only for its lease, also while it waits.")));
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("courier.read cannot run in a REPEATABLE READ or SERIALIZABLE transaction"),
				 errhint("Read in a READ COMMITTED transaction.")));
	tupstore = courier_materialize(fcinfo, "courier.read", &rs.tupdesc, &rs.row_context);
	rs.rows = MemoryContextAlloc(rs.row_context, sizeof(HeapTuple) * rs.max_messages);

	courier_enter(&call);
	courier_guard_plans();
	rs.stream = stream_lookup(name, false);
	stream_check_privilege(&call, rs.stream, STREAM_PRIV_READ);
	group_id = stream_group_id(rs.stream, group, false);

	now = GetCurrentTimestamp();
	deadline = now + wait_us;
	curs = palloc(sizeof(StreamCursor) * (rs.stream->partitions + 1));
	ncurs = assign_partitions(rs.stream, group_id, consumer, now, lease_us, curs);

	if (wait_us > 0)
		wait_begin_id(-rs.stream->stream_id);
	for (;;)
	{
		SnapXids	sx;
		StreamCursor *tries = palloc(sizeof(StreamCursor) * (ncurs + 1));
		uint32		first = ncurs > 0 ? rotation++ % (uint32) ncurs : 0;

		/* each round starts from the cursors as assigned: what it returns is all there is */
		memcpy(tries, curs, sizeof(StreamCursor) * ncurs);
		snap_take(&sx);
		for (int k = 0; k < ncurs; k++)
			check_position(rs.stream, group, &tries[k], &sx);
		for (int k = 0; k < ncurs && rs.got < rs.max_messages; k++)
			read_partition(&rs, &tries[(first + k) % ncurs], &sx);
		snap_release(&sx);
		now = GetCurrentTimestamp();
		/* a consumer that holds nothing waits too, rather than spin on its reads */
		if (rs.got > 0 || now >= deadline)
		{
			store_delivered(group_id, consumer, tries, ncurs);
			break;
		}
		pfree(tries);
		(void) wait_sleep(deadline);
	}
	if (wait_us > 0)
		wait_end_id(-rs.stream->stream_id);
	courier_leave(&call);

	for (int i = 0; i < rs.got; i++)
		tuplestore_puttuple(tupstore, rs.rows[i]);
	return (Datum) 0;
}

/*
 * courier.commit(stream_name text, group_name text, consumer text)
 *	 RETURNS integer
 *		Commit what the consumer's reads returned so far, on every partition
 *		it still holds; returns on how many partitions the committed
 *		position moved.  Needs read.  A consumer that holds no partition
 *		(its leases were taken over after they ended) gets 55000: what it
 *		read will be read again by the new holders.
 */
PG_FUNCTION_INFO_V1(courier_commit);
Datum
courier_commit(PG_FUNCTION_ARGS)
{
	static Oid	argtypes[3] = {INT4OID, TEXTOID, TIMESTAMPTZOID};
	text	   *name = courier_arg_text(fcinfo, 0, "stream name");
	text	   *group = courier_arg_text(fcinfo, 1, "group name");
	char	   *consumer = consumer_arg(fcinfo, 2);
	CourierCall call;
	CourierStream *stream;
	SPIPlanPtr	plan;
	Datum		args[3];
	int64		held;
	int64		moved;
	bool		isnull;

	courier_enter(&call);
	stream = stream_lookup(name, false);
	stream_check_privilege(&call, stream, STREAM_PRIV_READ);
	args[0] = Int32GetDatum(stream_group_id(stream, group, false));
	args[1] = PG_GETARG_DATUM(2);
	args[2] = TimestampTzGetDatum(GetCurrentTimestamp());
	plan = read_plan(RPLAN_COMMIT,
					 "WITH held AS ("
					 " SELECT c.part, (c.committed_pos <> c.delivered_pos"
					 "                 OR c.committed_pending <> c.delivered_pending) AS moves"
					 "   FROM courier.stream_cursor c"
					 "  WHERE c.group_id = $1 AND c.holder = $2 FOR UPDATE),"
					 " done AS ("
					 " UPDATE courier.stream_cursor c"
					 "    SET committed_pos = c.delivered_pos,"
					 "        committed_pending = c.delivered_pending, committed_at = $3"
					 "   FROM held WHERE c.group_id = $1 AND c.part = held.part AND held.moves"
					 " RETURNING 1)"
					 " SELECT (SELECT pg_catalog.count(*) FROM held),"
					 "        (SELECT pg_catalog.count(*) FROM done)",
					 3, argtypes);
	(void) courier_execute(plan, args, NULL, false, SPI_OK_SELECT);
	held = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	moved = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (held == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("consumer \"%s\" holds no partition of group \"%s\" of stream \"%s\"",
						consumer, text_to_cstring(group), stream->name),
				 errdetail("Its leases ended and other consumers took its partitions over, or it has not read yet."),
				 errhint("What it read since its last commit will be read again; read again to take partitions.")));
	courier_leave(&call);
	PG_RETURN_INT32((int32) moved);
}
