/*-------------------------------------------------------------------------
 *
 * receive.c
 *	  courier.receive(): lease up to n visible messages of a queue.
 *
 * Concurrency.  A message is leased by writing its row in the queue's
 * UNLOGGED lease table; the message row itself is never updated, so a
 * receive writes no WAL of its own and its commit needs no WAL flush (see
 * RecordTransactionCommit: a transaction that wrote only unlogged tables
 * commits asynchronously).  Losing leases in a crash only makes messages
 * visible again, which at-least-once delivery allows.
 *
 * Three steps, each with a fresh snapshot (READ COMMITTED):
 *	1. candidates: visible messages in id order with no lease in force;
 *	2. for each candidate, try the message lock (an advisory-type lock with a
 *	   private tag, see ack.c) without waiting; a message locked by another
 *	   session is being received or acknowledged right now and is skipped,
 *	   so consumers never wait on each other;
 *	3. one statement, under a snapshot taken after the locks were granted,
 *	   renews the leases of the locked messages whose lease has ended and
 *	   creates those that have none, and returns the messages still present.
 * A concurrent receiver that committed a lease after our step-1 snapshot, or
 * an ack that committed after it, is seen by step 3's snapshot: both held
 * the message lock until they committed.
 * Locks of messages not leased in step 3 are released at once; the others
 * are held to the end of the transaction.
 *
 * The lease probe is kept a correlated subplan (OFFSET 0), one index probe
 * per candidate: a merge anti join would read every lease of the queue.
 *
 * Scan start.  Messages in flight at the head of a queue would make every
 * scan from the head probe their leases.  A backend therefore starts its
 * scan after the highest id it leased last time, and from the head only
 * once per COURIER_RESCAN_US or when the shorter scan finds nothing.  So a
 * receive returns nothing only if a scan from the head found nothing, and a
 * message that becomes visible below the hint (lease expired, released,
 * delay over, or a sender that committed late) waits at most
 * COURIER_RESCAN_US longer while newer messages keep coming.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"

#include "courier.h"

#define RECEIVE_COLUMNS 10

static Datum
detoast_if_external(Datum value)
{
	if (VARATT_IS_EXTERNAL(DatumGetPointer(value)))
		return PointerGetDatum(detoast_external_attr((struct varlena *) DatumGetPointer(value)));
	return value;
}

/* how soon a waiting receive looks again at a message locked by another session */
#define RECEIVE_LOCKED_RETRY_MS 10
#define RECEIVE_LOCKED_RETRIES 5

static int64 *sort_ids;

static int
cmp_row_order(const void *a, const void *b)
{
	int64		x = sort_ids[*(const int *) a];
	int64		y = sort_ids[*(const int *) b];

	return (x > y) - (x < y);
}

/* What one receive call needs across its rounds. */
typedef struct ReceiveState
{
	CourierQueue *queue;
	int			max_messages;
	int			got;
	int64		visibility;		/* microseconds */
	uint64		token;
	int64	   *locked;			/* [max_messages] */
	int			skipped_locked; /* candidates locked by others */
	int			moved;			/* moved to the dead-letter queue, still locked */
	HeapTuple  *rows;			/* [max_messages], in per-query memory */
	int64	   *row_ids;		/* [max_messages] */
	MemoryContext row_context;
	TupleDesc	tupdesc;
} ReceiveState;

/*
 * Adds row i of SPI_tuptable, a leased message (msg_id, body, body_text,
 * body_bytes, attributes, sent_at, receive_count, dead_letter, group_id,
 * key_id, body_type), to the result and sets *msg_id.  Returns false, and
 * adds nothing, for an encrypted body that cannot be opened: it stays
 * leased, so its receive count grows and the redrive policy applies
 * (crypto.c warns).
 */
static bool
add_row(ReceiveState *rs, uint64 i, int64 *msg_id)
{
	HeapTuple	tuple = SPI_tuptable->vals[i];
	TupleDesc	desc = SPI_tuptable->tupdesc;
	Datum		values[RECEIVE_COLUMNS];
	bool		nulls[RECEIVE_COLUMNS];
	MemoryContext oldcontext;
	bool		key_null;
	Datum		key_id;

	*msg_id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &nulls[0]));
	values[0] = Int64GetDatum(*msg_id);
	values[1] = CStringGetTextDatum(psprintf("%llx.%016llx", (unsigned long long) *msg_id,
											 (unsigned long long) rs->token));
	nulls[1] = false;
	for (int c = 2; c < RECEIVE_COLUMNS; c++)
	{
		values[c] = SPI_getbinval(tuple, desc, c, &nulls[c]);
		if (!nulls[c] && c != 6 && c != 7)	/* not sent_at, receive_count */
			values[c] = detoast_if_external(values[c]);
	}
	key_id = SPI_getbinval(tuple, desc, RECEIVE_COLUMNS, &key_null);
	if (!key_null &&
		!crypto_open(rs->queue, *msg_id, DatumGetInt32(key_id),
					 DatumGetChar(SPI_getbinval(tuple, desc, RECEIVE_COLUMNS + 1, &key_null)),
					 values[4], &values[2], &nulls[2]))
		return false;
	oldcontext = MemoryContextSwitchTo(rs->row_context);
	rs->rows[rs->got] = heap_form_tuple(rs->tupdesc, values, nulls);
	MemoryContextSwitchTo(oldcontext);
	rs->row_ids[rs->got] = *msg_id;
	rs->got++;
	return true;
}

/*
 * The dead-letter move: lease rows and messages out, messages into the
 * dead-letter queue; a FIFO dead-letter queue also gets the rows of the
 * groups moved in.
 */
#define DEAD_LETTER_MOVED \
	"WITH dead AS (" \
	" DELETE FROM courier.l_%1$d l" \
	"  WHERE l.msg_id = ANY ($1) AND l.invisible_until <= $2" \
	"    AND l.receive_count >= $3" \
	" RETURNING l.msg_id, l.receive_count, l.first_received_at," \
	"           l.last_received_at, l.last_error)," \
	" moved AS (" \
	" DELETE FROM courier.q_%1$d m USING dead WHERE m.msg_id = dead.msg_id" \
	" RETURNING m.msg_id, m.sent_at, m.body, m.body_text, m.body_bytes," \
	"           m.attributes, m.group_id, m.key_id, m.body_type, dead.receive_count," \
	"           dead.first_received_at, dead.last_received_at, dead.last_error)"
#define DEAD_LETTER_GROUPS \
	", grouped AS (" \
	" INSERT INTO courier.g_%2$d (group_id)" \
	" SELECT DISTINCT group_id FROM moved WHERE group_id IS NOT NULL" \
	" ON CONFLICT (group_id) DO NOTHING)"
#define DEAD_LETTER_INSERT \
	" INSERT INTO courier.q_%2$d" \
	"  (msg_id, sent_at, visible_at, body, body_text, body_bytes, attributes," \
	"   group_id, key_id, body_type, dead_letter)" \
	" SELECT msg_id, sent_at, $2, body, body_text, body_bytes, attributes, group_id," \
	"        key_id, body_type," \
	"        pg_catalog.jsonb_build_object('queue', $4, 'queue_id', $5," \
	"          'receive_count', receive_count," \
	"          'first_received_at', first_received_at," \
	"          'last_received_at', last_received_at," \
	"          'reason', last_error, 'dead_lettered_at', $2)" \
	"   FROM moved ORDER BY msg_id RETURNING msg_id"

/*
 * Moves those of the given locked messages that were delivered max_receives
 * times, and whose last lease has ended, to the queue's dead-letter queue,
 * atomically: same id, body, attributes and send time, plus where and how
 * often it was delivered and the reason its last release gave.
 */
static int
dead_letter(CourierQueue *queue, int64 *ids, int nids, TimestampTz now, bool *moved)
{
	static Oid	argtypes[5] = {INT8ARRAYOID, TIMESTAMPTZOID, INT4OID, TEXTOID, INT4OID};
	Datum		args[5];
	SPIPlanPtr	plan;

	args[0] = courier_int8_array(ids, nids);
	args[1] = TimestampTzGetDatum(now);
	args[2] = Int32GetDatum(queue->max_receives);
	args[3] = CStringGetTextDatum(queue->name);
	args[4] = Int32GetDatum(queue->queue_id);
	plan = courier_plan(queue, PLAN_DEAD_LETTER,
						queue->dead_letter_fifo ?
						DEAD_LETTER_MOVED DEAD_LETTER_GROUPS DEAD_LETTER_INSERT :
						DEAD_LETTER_MOVED DEAD_LETTER_INSERT,
						5, argtypes);
	(void) courier_execute(plan, args, NULL, false, SPI_OK_INSERT_RETURNING);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull));

		for (int i = 0; i < nids; i++)
			if (ids[i] == id)
				moved[i] = true;
	}
	if (SPI_processed > 0)
		wait_signal_queue_id(queue->dead_letter_queue_id, false, WAKE_ON_COMMIT);
	return (int) SPI_processed;
}

/*
 * Leases up to max_messages - got messages visible at 'now' into the result;
 * see the file header for the steps and the scan start.
 */
static void
receive_rounds(ReceiveState *rs, TimestampTz now)
{
	static Oid	candidate_types[4] = {INT8OID, TIMESTAMPTZOID, INT8OID, INT8OID};
	static Oid	lease_types[9] = {INT8ARRAYOID, INT8OID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT4OID,
	INTERVALOID, BOOLOID, INTERVALOID, BOOLOID};
	CourierQueue *queue = rs->queue;
	int			max_messages = rs->max_messages;
	int64	   *locked = rs->locked;
	uint64		token = rs->token;
	bool		exhausted = false;
	int64		last = 0;
	int64		end = PG_INT64_MAX;
	int64		start;
	SPIPlanPtr	plan;
	Datum		args[9];

	/*
	 * Rounds of steps 1-3 until max_messages are leased or no candidate is
	 * left.  A round leases fewer than it locked only when other consumers
	 * leased some of its candidates after its snapshot; the next round goes
	 * on from the last candidate seen.
	 */
	if (queue->scan_hint > 0 && now - queue->full_scan_at < COURIER_RESCAN_US)
		last = queue->scan_hint;
	else
		queue->full_scan_at = now;
	start = last;
	for (;;)
	{
		int			nlocked = 0;
		int			next_locked = 0;
		int			nunleased = 0;

		if (rs->got == max_messages || rs->moved >= COURIER_MAX_RECEIVE)
			break;
		if (exhausted)
		{
			if (start == 0)
				break;
			/* the scan from the hint ran dry: look from the head up to it once */
			end = start;
			last = start = 0;
			exhausted = false;
			queue->full_scan_at = now;
		}

		/* Steps 1 and 2: lock candidates, skipping those locked by others. */
		plan = courier_plan(queue, PLAN_CANDIDATES,
							"SELECT m.msg_id FROM courier.q_%1$d m"
							" WHERE m.msg_id > $1 AND m.msg_id <= $4 AND m.visible_at <= $2"
							"   AND NOT EXISTS (SELECT FROM courier.l_%1$d l"
							"                    WHERE l.msg_id = m.msg_id AND l.invisible_until > $2"
							"                   OFFSET 0)"
							" ORDER BY m.msg_id LIMIT $3",
							4, candidate_types);
		while (nlocked < max_messages - rs->got)
		{
			int64		need = max_messages - rs->got - nlocked;

			/*
			 * A few more than needed, for those other consumers hold right
			 * now; each extra candidate costs a heap fetch and a lease probe.
			 */
			int64		limit = need + Min(need, 8) + 3;
			uint64		n;

			args[0] = Int64GetDatum(last);
			args[1] = TimestampTzGetDatum(now);
			args[2] = Int64GetDatum(limit);
			args[3] = Int64GetDatum(end);
			(void) courier_execute(plan, args, NULL, false, SPI_OK_SELECT);
			n = SPI_processed;
			for (uint64 i = 0; i < n && nlocked < max_messages - rs->got; i++)
			{
				bool		isnull;

				last = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
				if (courier_lock_message(last, false))
					locked[nlocked++] = last;
				else
					rs->skipped_locked++;
			}
			SPI_freetuptable(SPI_tuptable);
			if (n < (uint64) limit)
			{
				exhausted = true;
				break;
			}
			CHECK_FOR_INTERRUPTS();
		}
		if (nlocked == 0)
			continue;		/* exhausted: the loop head decides */

		/* Step 3: lease what is still there and not leased by someone else. */
		args[0] = courier_int8_array(locked, nlocked);
		args[1] = Int64GetDatum((int64) token);
		args[2] = TimestampTzGetDatum(now + rs->visibility);
		args[3] = TimestampTzGetDatum(now);
		args[4] = Int32GetDatum(queue->max_receives);
		args[5] = IntervalPGetDatum(&queue->retry_delay);
		args[6] = BoolGetDatum(queue->retry_exponential);
		args[7] = IntervalPGetDatum(&queue->retry_max_delay);
		args[8] = BoolGetDatum(queue->retry_jitter);

		/*
		 * A lease is renewed only once the one in force has ended, and only
		 * while the message has been delivered fewer than max_receives times;
		 * a message with no lease row gets a new one.  Its end includes the
		 * retry delay its delivery number earns, so an expired lease makes the
		 * message visible again only after that delay.
		 *
		 * Not INSERT ... ON CONFLICT DO UPDATE ... WHERE: that locks the
		 * conflicting row even when the WHERE fails, and a receive that lost
		 * the race would hold another consumer's lease row (blocking its ack)
		 * to the end of its transaction, a whole wait long.  A plain UPDATE
		 * locks only the rows it changes.  Our message locks keep every other
		 * writer of these lease rows out, and this statement's snapshot was
		 * taken after we got them, so it sees their latest versions.
		 */
		plan = courier_plan(queue, PLAN_LEASE,
							"WITH renewed AS ("
							" UPDATE courier.l_%1$d l"
							"    SET token = $2,"
							"        invisible_until = $3 + "
							COURIER_RETRY_DELAY_SQL("l.receive_count + 1", "$6", "$7", "$8", "$9") ","
							"        receive_count = l.receive_count + 1, last_received_at = $4"
							"  WHERE l.msg_id = ANY ($1) AND l.invisible_until <= $4"
							"    AND l.receive_count < $5"
							" RETURNING l.msg_id, l.receive_count),"
							" fresh AS ("
							" INSERT INTO courier.l_%1$d AS l"
							"  (msg_id, token, invisible_until, receive_count, first_received_at,"
							"   last_received_at)"
							" SELECT m.msg_id, $2,"
							"        $3 + " COURIER_RETRY_DELAY_SQL("1", "$6", "$7", "$8", "$9") ","
							"        1, $4, $4"
							"   FROM courier.q_%1$d m"
							"  WHERE m.msg_id = ANY ($1)"
							"    AND NOT EXISTS (SELECT FROM courier.l_%1$d o WHERE o.msg_id = m.msg_id)"
							" ON CONFLICT (msg_id) DO NOTHING"
							" RETURNING l.msg_id, l.receive_count),"
							" leased AS (SELECT * FROM renewed UNION ALL SELECT * FROM fresh)"
							" SELECT m.msg_id, m.body, m.body_text, m.body_bytes, m.attributes,"
							"        m.sent_at, leased.receive_count, m.dead_letter, m.group_id,"
							"        m.key_id, m.body_type"
							"   FROM leased JOIN courier.q_%1$d m ON m.msg_id = leased.msg_id"
							"  ORDER BY m.msg_id",
							9, lease_types);
		(void) courier_execute(plan, args, NULL, false, SPI_OK_SELECT);

		for (uint64 i = 0; i < SPI_processed; i++)
		{
			int64		msg_id;

			(void) add_row(rs, i, &msg_id);
			if (msg_id > queue->scan_hint)
				queue->scan_hint = msg_id;

			/* both lists are in id order: keep the ones not leased for later */
			while (next_locked < nlocked && locked[next_locked] < msg_id)
				locked[nunleased++] = locked[next_locked++];
			if (next_locked < nlocked && locked[next_locked] == msg_id)
				next_locked++;
		}
		while (next_locked < nlocked)
			locked[nunleased++] = locked[next_locked++];
		SPI_freetuptable(SPI_tuptable);

		/*
		 * Locked but not leased: leased by someone else meanwhile, gone, or
		 * delivered max_receives times already.  Move the last kind to the
		 * dead-letter queue, still under their locks; unlock the rest.
		 */
		{
			/* moved messages keep their locks until commit */
			bool	   *moved = palloc0(sizeof(bool) * (nunleased + 1));

			if (nunleased > 0 && queue->dead_letter_queue_id != 0)
				rs->moved += dead_letter(queue, locked, nunleased, now, moved);
			for (int i = 0; i < nunleased; i++)
				if (!moved[i])
					courier_unlock_message(locked[i]);
			pfree(moved);
		}
	}
}

/* Whether this receive call leased msg_id already. */
static bool
leased_here(ReceiveState *rs, int64 msg_id)
{
	for (int i = 0; i < rs->got; i++)
		if (rs->row_ids[i] == msg_id)
			return true;
	return false;
}

/*
 * Leases, on a FIFO queue, up to max_messages - got messages visible at
 * 'now' into the result: group by group, in turn order (groups.c).
 *
 * The steps of receive_rounds, per group:
 *	1. candidates: groups, in turn order, whose head (oldest message) is
 *	   visible and none of whose lease rows is in force;
 *	2. try the message lock of the head; a head locked by another session
 *	   is being received (or acknowledged) right now: skip the group;
 *	3. under a snapshot taken after the lock, if the head is still the head
 *	   and no lease of the group is in force, lease the head and the visible
 *	   messages right after it (up to what is still wanted, stopping at the
 *	   first that is not visible or was delivered max_receives times), and
 *	   move the group to the back of the line (unless that took all its
 *	   messages: its acks will remove it from the line, and moving it first
 *	   would only add a row version and two index entries per message to a
 *	   queue of one-message groups).
 * Who leases a group holds its head's lock until commit, so a concurrent
 * receive either fails to lock the head or sees the leases in step 3.
 *
 * Scan start.  Serving a group moves it to the back of the line, so the
 * front of the turn index fills with entries of row versions that are gone
 * (until VACUUM), which every scan from the head would step over.  As in
 * receive_rounds, a backend starts below the first group it found ready last
 * time, and from the head once per COURIER_RESCAN_US or when the shorter
 * scan finds nothing; a group that became ready below that point (its lease
 * expired) waits at most that much longer.
 */
static void
receive_fifo_rounds(ReceiveState *rs, TimestampTz now)
{
	static Oid	candidate_types[3] = {INT8OID, TIMESTAMPTZOID, INT8OID};
	static Oid	lease_types[11] = {TEXTOID, INT8OID, INT8OID, TIMESTAMPTZOID, TIMESTAMPTZOID,
	INT4OID, INTERVALOID, BOOLOID, INTERVALOID, BOOLOID, INT8OID};
	CourierQueue *queue = rs->queue;
	int64		last_turn = 0;
	bool		from_hint = false;
	bool		first_query = true;
	SPIPlanPtr	plan;
	Datum		args[11];

	groups_ensure_built(queue);
	if (queue->scan_hint > 0 && now - queue->full_scan_at < COURIER_RESCAN_US)
	{
		last_turn = queue->scan_hint;
		from_hint = true;
	}
	else
		queue->full_scan_at = now;
	while (rs->got < rs->max_messages && rs->moved < COURIER_MAX_RECEIVE)
	{
		int64		need = rs->max_messages - rs->got;
		int64		limit = need + Min(need, 8) + 3;
		uint64		n;
		int64	   *turns;
		int64	   *heads;
		Datum	   *groups;
		bool		requery = false;

		plan = courier_plan(queue, PLAN_FIFO_CANDIDATES,
							"SELECT g.turn, h.msg_id, g.group_id FROM courier.g_%1$d g"
							" CROSS JOIN LATERAL (SELECT m.msg_id, m.visible_at FROM courier.q_%1$d m"
							"                      WHERE m.group_id = g.group_id"
							"                      ORDER BY m.msg_id LIMIT 1) h"
							" WHERE g.turn > $1 AND h.visible_at <= $2"
							"   AND NOT EXISTS (SELECT FROM courier.l_%1$d l"
							"                    WHERE l.group_id = g.group_id AND l.invisible_until > $2"
							"                   OFFSET 0)"
							" ORDER BY g.turn LIMIT $3",
							3, candidate_types);
		args[0] = Int64GetDatum(last_turn);
		args[1] = TimestampTzGetDatum(now);
		args[2] = Int64GetDatum(limit);
		n = courier_execute(plan, args, NULL, false, SPI_OK_SELECT);
		turns = palloc(sizeof(int64) * (n + 1));
		heads = palloc(sizeof(int64) * (n + 1));
		groups = palloc(sizeof(Datum) * (n + 1));
		for (uint64 i = 0; i < n; i++)
		{
			HeapTuple	tuple = SPI_tuptable->vals[i];
			bool		isnull;

			turns[i] = DatumGetInt64(SPI_getbinval(tuple, SPI_tuptable->tupdesc, 1, &isnull));
			heads[i] = DatumGetInt64(SPI_getbinval(tuple, SPI_tuptable->tupdesc, 2, &isnull));
			groups[i] = PointerGetDatum(DatumGetTextPCopy(SPI_getbinval(tuple, SPI_tuptable->tupdesc,
																		3, &isnull)));
		}
		SPI_freetuptable(SPI_tuptable);
		/* the next call may start here: nothing below was ready */
		if (first_query && n > 0)
			queue->scan_hint = turns[0] - 1;
		first_query = false;

		for (uint64 i = 0; i < n && rs->got < rs->max_messages; i++)
		{
			uint64		leased;

			last_turn = turns[i];

			/*
			 * A group served by this call comes up again behind the others
			 * when its leases have ended already (visibility_timeout 0): a
			 * message is delivered once per call.
			 */
			if (leased_here(rs, heads[i]))
				continue;
			if (!courier_lock_message(heads[i], false))
			{
				rs->skipped_locked++;
				continue;
			}
			plan = courier_plan(queue, PLAN_FIFO_LEASE,
								"WITH pre AS MATERIALIZED ("
								" SELECT m.msg_id, m.visible_at FROM courier.q_%1$d m"
								"  WHERE m.group_id = $1 ORDER BY m.msg_id LIMIT $11),"
								" st AS MATERIALIZED ("
								" SELECT p.msg_id, l.msg_id IS NOT NULL AS has_lease,"
								"        pg_catalog.bool_and(p.visible_at <= $5"
								"                            AND COALESCE(l.receive_count, 0) < $6)"
								"          OVER (ORDER BY p.msg_id) AS go"
								"   FROM pre p LEFT JOIN courier.l_%1$d l ON l.msg_id = p.msg_id),"
								" take AS MATERIALIZED ("
								" SELECT st.msg_id, st.has_lease FROM st"
								"  WHERE st.go AND (SELECT pg_catalog.min(msg_id) FROM pre) = $2"
								"    AND NOT EXISTS (SELECT FROM courier.l_%1$d b"
								"                     WHERE b.group_id = $1 AND b.invisible_until > $5)),"
								" renewed AS ("
								" UPDATE courier.l_%1$d l"
								"    SET token = $3,"
								"        invisible_until = $4 + "
								COURIER_RETRY_DELAY_SQL("l.receive_count + 1", "$7", "$8", "$9", "$10") ","
								"        receive_count = l.receive_count + 1, last_received_at = $5"
								"   FROM take t WHERE l.msg_id = t.msg_id AND t.has_lease"
								" RETURNING l.msg_id, l.receive_count),"
								" fresh AS ("
								" INSERT INTO courier.l_%1$d AS l"
								"  (msg_id, token, invisible_until, receive_count, first_received_at,"
								"   last_received_at, group_id)"
								" SELECT t.msg_id, $3,"
								"        $4 + " COURIER_RETRY_DELAY_SQL("1", "$7", "$8", "$9", "$10") ","
								"        1, $5, $5, $1"
								"   FROM take t WHERE NOT t.has_lease"
								" ON CONFLICT (msg_id) DO NOTHING"
								" RETURNING l.msg_id, l.receive_count),"
								" turned AS ("
								" UPDATE courier.g_%1$d g SET turn = pg_catalog.nextval('courier.group_turn_seq')"
								"  WHERE g.group_id = $1 AND EXISTS (SELECT FROM take)"
								"    AND ((SELECT pg_catalog.count(*) FROM take) < (SELECT pg_catalog.count(*) FROM pre)"
								"         OR (SELECT pg_catalog.count(*) FROM pre) = $11)),"
								" leased AS (SELECT * FROM renewed UNION ALL SELECT * FROM fresh)"
								" SELECT m.msg_id, m.body, m.body_text, m.body_bytes, m.attributes,"
								"        m.sent_at, leased.receive_count, m.dead_letter, m.group_id,"
								"        m.key_id, m.body_type"
								"   FROM leased JOIN courier.q_%1$d m ON m.msg_id = leased.msg_id"
								"  ORDER BY m.msg_id",
								11, lease_types);
			args[0] = groups[i];
			args[1] = Int64GetDatum(heads[i]);
			args[2] = Int64GetDatum((int64) rs->token);
			args[3] = TimestampTzGetDatum(now + rs->visibility);
			args[4] = TimestampTzGetDatum(now);
			args[5] = Int32GetDatum(queue->max_receives);
			args[6] = IntervalPGetDatum(&queue->retry_delay);
			args[7] = BoolGetDatum(queue->retry_exponential);
			args[8] = IntervalPGetDatum(&queue->retry_max_delay);
			args[9] = BoolGetDatum(queue->retry_jitter);
			args[10] = Int64GetDatum(rs->max_messages - rs->got);
			leased = courier_execute(plan, args, NULL, false, SPI_OK_SELECT);

			/*
			 * A message that cannot be decrypted holds back the rest of its
			 * group: they stay leased, and come back after it.
			 */
			for (uint64 r = 0; r < leased; r++)
			{
				int64		msg_id;

				if (!add_row(rs, r, &msg_id))
					break;
			}
			SPI_freetuptable(SPI_tuptable);
			if (leased == 0)
			{
				/*
				 * Not leased: the group was taken meanwhile, or its head was
				 * delivered max_receives times: move that one to the
				 * dead-letter queue (it keeps its lock until commit).
				 */
				bool		moved = false;

				if (queue->dead_letter_queue_id != 0)
					rs->moved += dead_letter(queue, &heads[i], 1, now, &moved);
				if (moved)
				{
					/* the group's next message may go now: look at the group again */
					groups_forget_if_empty(queue, groups[i]);
					last_turn = turns[i] - 1;
					requery = true;
					break;
				}
				courier_unlock_message(heads[i]);
			}
			CHECK_FOR_INTERRUPTS();
		}
		if (n < (uint64) limit && !requery)
		{
			if (!from_hint)
				break;
			/* the scan from the hint ran dry: look from the head once */
			from_hint = false;
			last_turn = 0;
			queue->full_scan_at = now;
		}
	}
}

/*
 * The next moment a message of the queue becomes visible without a send: a
 * delayed message's delay ends or a lease ends.  DT_NOEND if none.
 */
static TimestampTz
next_visible_at(CourierQueue *queue, TimestampTz now)
{
	static Oid	argtypes[1] = {TIMESTAMPTZOID};
	SPIPlanPtr	plan;
	Datum		args[1];
	Datum		result;
	bool		isnull;

	plan = courier_plan(queue, PLAN_NEXT_VISIBLE,
						"SELECT LEAST("
						" (SELECT pg_catalog.min(m.visible_at) FROM courier.q_%1$d m"
						"   WHERE m.visible_at > m.sent_at AND m.visible_at > $1),"
						" (SELECT pg_catalog.min(l.invisible_until) FROM courier.l_%1$d l"
						"   WHERE l.invisible_until > $1))",
						1, argtypes);
	args[0] = TimestampTzGetDatum(now);
	if (courier_execute(plan, args, NULL, true, SPI_OK_SELECT) != 1)
		elog(ERROR, "pg_courier: next_visible_at returned no row");
	result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	SPI_freetuptable(SPI_tuptable);
	return isnull ? DT_NOEND : DatumGetTimestampTz(result);
}

/*
 * courier.receive(queue_name text, max_messages integer,
 *				   visibility_timeout interval, wait interval)
 *	 RETURNS TABLE (msg_id bigint, receipt text, body jsonb, body_text text,
 *					body_bytes bytea, attributes jsonb, sent_at timestamptz,
 *					receive_count integer, dead_letter jsonb, group_id text)
 *		Lease up to max_messages visible messages, in id order; with wait,
 *		wait up to that long for the first one (wait.c).
 *
 * Never waits for a lock.  Refused under REPEATABLE READ and SERIALIZABLE,
 * whose single snapshot cannot see acknowledgements committed meanwhile.
 */
PG_FUNCTION_INFO_V1(courier_receive);
Datum
courier_receive(PG_FUNCTION_ARGS)
{
	text	   *name = courier_arg_text(fcinfo, 0, "queue name");
	ReceiveState rs;
	int64		wait = 0;
	Tuplestorestate *tupstore;
	CourierCall call;
	TimestampTz now;
	TimestampTz deadline;
	int		   *order;
	int			retries = 0;

	memset(&rs, 0, sizeof(rs));
	rs.visibility = -1;
	courier_arg_notnull(fcinfo, 1, "max_messages");
	rs.max_messages = PG_GETARG_INT32(1);
	if (rs.max_messages < 1 || rs.max_messages > COURIER_MAX_RECEIVE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_messages must be between 1 and %d", COURIER_MAX_RECEIVE)));
	if (!PG_ARGISNULL(2))
		rs.visibility = courier_interval_usecs(PG_GETARG_INTERVAL_P(2), "visibility_timeout",
											   COURIER_MAX_VISIBILITY_US);
	if (PG_NARGS() > 3 && !PG_ARGISNULL(3))
		wait = courier_interval_usecs(PG_GETARG_INTERVAL_P(3), "wait",
									  (int64) courier_max_wait_ms * 1000);
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("courier.receive cannot run in a REPEATABLE READ or SERIALIZABLE transaction"),
				 errhint("Receive in a READ COMMITTED transaction.")));

	tupstore = courier_materialize(fcinfo, "courier.receive", &rs.tupdesc, &rs.row_context);
	rs.rows = MemoryContextAlloc(rs.row_context, sizeof(HeapTuple) * rs.max_messages);
	rs.row_ids = MemoryContextAlloc(rs.row_context, sizeof(int64) * rs.max_messages);

	courier_enter(&call);
	courier_guard_plans();
	rs.queue = courier_lookup_queue(name, false);
	courier_check_privilege(&call, rs.queue, COURIER_PRIV_RECEIVE);
	if (rs.visibility < 0)
		rs.visibility = rs.queue->visibility_timeout;
	if (!pg_strong_random(&rs.token, sizeof(rs.token)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random receipt")));
	rs.token &= INT64CONST(0x7fffffffffffffff);
	if (rs.token == 0)
		rs.token = 1;			/* 0 marks a released lease */
	rs.locked = palloc(sizeof(int64) * rs.max_messages);

	now = GetCurrentTimestamp();
	deadline = now + wait;
	if (wait > 0)
		wait_begin(rs.queue);
	for (;;)
	{
		TimestampTz until;

		rs.skipped_locked = 0;
		if (!wait_enter_dead_letter_queue(rs.queue))
			rs.skipped_locked = 1;	/* being redriven: look again shortly */
		else if (rs.queue->fifo)
			receive_fifo_rounds(&rs, now);
		else
			receive_rounds(&rs, now);
		now = GetCurrentTimestamp();
		if (rs.got > 0 || now >= deadline)
			break;
		until = Min(deadline, next_visible_at(rs.queue, now));

		/*
		 * Woken, but what woke us was still locked: the session that woke us
		 * (a release, say) commits before it lets its locks go.  Look again
		 * shortly, a few times; a message locked by a transaction that stays
		 * open wakes us when it ends instead.
		 */
		if (rs.skipped_locked > 0 && retries < RECEIVE_LOCKED_RETRIES)
		{
			until = Min(until, now + RECEIVE_LOCKED_RETRY_MS * 1000);
			retries++;
		}
		if (wait_sleep(until))
			retries = 0;
		now = GetCurrentTimestamp();
		/* what woke us may lie below this backend's scan hint */
		rs.queue->full_scan_at = 0;
	}
	if (wait > 0)
		wait_end(rs.queue);
	if (rs.got > 0)
		wait_signal_queue(rs.queue, WAKE_ON_ABORT);
	courier_leave(&call);

	/* a scan from the hint followed by one from the head: restore id order */
	order = palloc(sizeof(int) * (rs.got + 1));
	for (int i = 0; i < rs.got; i++)
		order[i] = i;
	sort_ids = rs.row_ids;
	qsort(order, rs.got, sizeof(int), cmp_row_order);
	for (int i = 0; i < rs.got; i++)
		tuplestore_puttuple(tupstore, rs.rows[order[i]]);
	return (Datum) 0;
}
