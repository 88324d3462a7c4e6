/*-------------------------------------------------------------------------
 *
 * groups.c
 *	  Message groups and deduplication of FIFO queues: the group lock, the
 *	  group table, deduplication ids.  The FIFO dequeue itself is in
 *	  receive.c.
 *
 * Order within a group.  Every sender of a group takes the group lock (a
 * transaction-level lock on an advisory-type tag: database, queue id, hash
 * of the group id, COURIER_LOCKTAG_GROUP) before its message gets its id,
 * and keeps it until its transaction ends.  So of two senders of one group
 * the second gets its id only after the first committed or rolled back:
 * within a group, id order is commit order, and delivering a group in id
 * order delivers it in commit order.  Different groups hash to different
 * tags (a collision only makes two groups' senders take turns).
 *
 * The group table courier.g_<id> has one row per group with messages, in
 * "turn" order; receive serves groups from the front and moves each group
 * it serves to the back.  A sender adds its group's row (INSERT ... ON
 * CONFLICT DO NOTHING: no write, no row lock when it exists).  A row is
 * removed only under the group lock and only if a snapshot taken after the
 * lock shows no message of the group, so a group with a committed message
 * always has its row: senders hold the lock until they commit.
 *
 * The group table is UNLOGGED: a crash empties it, and the first receive
 * after that rebuilds it from the messages (groups_ensure_built).  The row
 * with the empty group id, which no message can have, marks a built table.
 *
 * Deduplication.  courier.d_<id> maps a dedup id to the id of the message
 * first sent with it, until expires_at.  A send claims its dedup id with
 * INSERT ... ON CONFLICT DO UPDATE ... WHERE expired: a concurrent sender
 * of the same id waits on the unique index for the first one's transaction,
 * then finds its row (a duplicate) or, if it rolled back, inserts its own.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/evp.h>

#include "access/detoast.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "courier.h"

#define COURIER_LOCKTAG_GROUP	0x4751
#define COURIER_LOCKTAG_REBUILD 0x4752

static void
group_locktag(LOCKTAG *tag, int32 queue_id, const char *group_id, int len)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) queue_id,
						 hash_bytes((const unsigned char *) group_id, len),
						 COURIER_LOCKTAG_GROUP);
}

/* Refuses a group or dedup id that is empty or too long. */
static void
check_id(text *id, const char *what)
{
	int			len = pg_mbstrlen_with_len(VARDATA_ANY(id), VARSIZE_ANY_EXHDR(id));

	if (len < 1 || len > COURIER_MAX_GROUP_ID)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must have 1 to %d characters", what, COURIER_MAX_GROUP_ID)));
}

/* The content dedup id of a body: "sha256:" and the hex SHA-256 of its bytes. */
static text *
content_dedup_id(Datum body, Oid body_type)
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int digest_len;
	char		hex[7 + 2 * EVP_MAX_MD_SIZE + 1] = "sha256:";
	const char *data;
	size_t		len;

	if (body_type == JSONBOID)
	{
		Jsonb	   *jb = DatumGetJsonbP(body);

		data = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
		len = strlen(data);
	}
	else
	{
		struct varlena *v = PG_DETOAST_DATUM_PACKED(body);

		data = VARDATA_ANY(v);
		len = VARSIZE_ANY_EXHDR(v);
	}
	if (EVP_Digest(data, len, digest, &digest_len, EVP_sha256(), NULL) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute the SHA-256 hash of a message body")));
	hex_encode((const char *) digest, digest_len, hex + 7);
	hex[7 + 2 * digest_len] = '\0';
	return cstring_to_text(hex);
}

/*
 * groups_check_message
 *		Apply the rules of group and dedup ids to a message about to be sent
 *		to queue; with content_dedup and no dedup id, set its content's.
 */
void
groups_check_message(CourierQueue *queue, CourierMessage *msg)
{
	if (msg->group_id != NULL)
		check_id(msg->group_id, "group_id");
	if (msg->dedup_id != NULL)
		check_id(msg->dedup_id, "dedup_id");
	if (!queue->fifo)
	{
		if (msg->dedup_id != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("dedup_id applies only to FIFO queues"),
					 errdetail("Queue \"%s\" is a standard queue.", queue->name)));
		return;
	}
	if (msg->group_id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("a message sent to FIFO queue \"%s\" needs a group_id", queue->name)));
	if (msg->delay_us >= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a message sent to FIFO queue \"%s\" cannot have a delay of its own",
						queue->name),
				 errdetail("A delayed message would hold back its whole group."),
				 errhint("Set the delay of the queue with alter_queue.")));
	if (msg->dedup_id == NULL && queue->content_dedup)
		msg->dedup_id = content_dedup_id(msg->body, msg->body_type);
}

/*
 * groups_lock
 *		Take the group lock of a message group of queue until the end of the
 *		transaction, waiting for a sender of the same group to finish.
 */
void
groups_lock(CourierQueue *queue, text *group_id)
{
	LOCKTAG		tag;

	group_locktag(&tag, queue->queue_id, VARDATA_ANY(group_id), VARSIZE_ANY_EXHDR(group_id));
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

/*
 * groups_try_lock
 *		Try the group lock without waiting; with release, give back a lock
 *		held instead.  Returns whether the lock was got (or given back).
 */
bool
groups_try_lock(int32 queue_id, const char *group_id, int len, bool release)
{
	LOCKTAG		tag;

	group_locktag(&tag, queue_id, group_id, len);
	if (release)
		return LockRelease(&tag, ExclusiveLock, false);
	return LockAcquire(&tag, ExclusiveLock, false, true) != LOCKACQUIRE_NOT_AVAIL;
}

/*
 * groups_add
 *		Make sure a group of queue has its row; the caller holds its group
 *		lock.
 */
void
groups_add(CourierQueue *queue, text *group_id)
{
	static Oid	argtypes[1] = {TEXTOID};
	Datum		args[1];
	SPIPlanPtr	plan;

	args[0] = PointerGetDatum(group_id);
	plan = courier_plan(queue, PLAN_GROUP_ADD,
						"INSERT INTO courier.g_%1$d (group_id) VALUES ($1)"
						" ON CONFLICT (group_id) DO NOTHING",
						1, argtypes);
	(void) courier_execute(plan, args, NULL, false, SPI_OK_INSERT);
}

/*
 * groups_forget_if_empty
 *		Remove the row of a group whose last message the caller just
 *		deleted, unless a sender of the group is active (it holds the group
 *		lock and will leave a message) or a message is left.
 *
 * The group lock is given back at once: a sender that comes next waits on
 * the deleted row until we commit, then adds the row anew.
 */
void
groups_forget_if_empty(CourierQueue *queue, Datum group_id)
{
	static Oid	argtypes[1] = {TEXTOID};
	text	   *group = DatumGetTextPP(group_id);
	Datum		args[1];
	SPIPlanPtr	plan;

	if (!groups_try_lock(queue->queue_id, VARDATA_ANY(group), VARSIZE_ANY_EXHDR(group), false))
		return;
	args[0] = PointerGetDatum(group);
	plan = courier_plan(queue, PLAN_GROUP_FORGET,
						"DELETE FROM courier.g_%1$d g WHERE g.group_id = $1"
						"   AND NOT EXISTS (SELECT FROM courier.q_%1$d m WHERE m.group_id = $1)",
						1, argtypes);
	(void) courier_execute(plan, args, NULL, false, SPI_OK_DELETE);
	(void) groups_try_lock(queue->queue_id, VARDATA_ANY(group), VARSIZE_ANY_EXHDR(group), true);
}

/*
 * groups_ensure_built
 *		Rebuild the group table of a FIFO queue if a crash emptied it; checked
 *		once per backend and cache entry (a crash restarts every backend).
 */
void
groups_ensure_built(CourierQueue *queue)
{
	static Oid	argtypes[1] = {INT4OID};
	SPIPlanPtr	plan;
	LOCKTAG		tag;
	bool		isnull;
	Datum		args[1];

	if (queue->groups_checked)
		return;
	plan = courier_plan(queue, PLAN_GROUP_MARKER,
						"SELECT EXISTS (SELECT FROM courier.g_%1$d g WHERE g.group_id = '')",
						0, NULL);
	(void) courier_execute(plan, NULL, NULL, false, SPI_OK_SELECT);
	if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
	{
		/* one rebuild at a time; who waited finds the marker back */
		SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) queue->queue_id, 0,
							 COURIER_LOCKTAG_REBUILD);
		(void) LockAcquire(&tag, ExclusiveLock, false, false);
		(void) courier_execute(plan, NULL, NULL, false, SPI_OK_SELECT);
		if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
		{
			args[0] = Int32GetDatum(queue->queue_id);
			if (SPI_execute_with_args("SELECT courier._rebuild_groups($1)", 1, argtypes, args,
									  NULL, false, 0) != SPI_OK_SELECT)
				elog(ERROR, "pg_courier: rebuilding the groups of queue %d failed", queue->queue_id);
			ereport(LOG,
					(errmsg("pg_courier: rebuilt the message groups of FIFO queue \"%s\"",
							queue->name)));
		}
	}
	queue->groups_checked = true;
}

/*
 * groups_dedup_claim
 *		Claim the dedup id of msg for a new message of queue.  Returns true
 *		and the id the new message must get, or false and the id of the
 *		message sent with that dedup id within the window.
 */
bool
groups_dedup_claim(CourierQueue *queue, CourierMessage *msg, int64 *msg_id)
{
	static Oid	argtypes[3] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	TimestampTz now = GetCurrentTimestamp();
	SPIPlanPtr	plan;
	Datum		args[3];
	bool		isnull;

	args[0] = PointerGetDatum(msg->dedup_id);
	args[1] = TimestampTzGetDatum(now + queue->dedup_window);
	args[2] = TimestampTzGetDatum(now);
	plan = courier_plan(queue, PLAN_DEDUP_CLAIM,
						"INSERT INTO courier.d_%1$d AS d (dedup_id, msg_id, expires_at)"
						" VALUES ($1, pg_catalog.nextval('courier.msg_id_seq'), $2)"
						" ON CONFLICT (dedup_id) DO UPDATE"
						"   SET msg_id = excluded.msg_id, expires_at = excluded.expires_at"
						"   WHERE d.expires_at <= $3"
						" RETURNING d.msg_id",
						3, argtypes);
	if (courier_execute(plan, args, NULL, false, SPI_OK_INSERT_RETURNING) == 1)
	{
		*msg_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		return true;
	}
	plan = courier_plan(queue, PLAN_DEDUP_ORIGINAL,
						"SELECT d.msg_id FROM courier.d_%1$d d WHERE d.dedup_id = $1",
						1, argtypes);
	if (courier_execute(plan, args, NULL, false, SPI_OK_SELECT) != 1)
		elog(ERROR, "pg_courier: dedup id of queue %d vanished", queue->queue_id);
	*msg_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	return false;
}

/*
 * courier._try_lock_group(queue_id integer, group_id text) RETURNS boolean
 * courier._unlock_group(queue_id integer, group_id text) RETURNS boolean
 *		The group lock for maintain(): tried without waiting, given back
 *		before the end of the transaction.
 */
PG_FUNCTION_INFO_V1(courier__try_lock_group);
Datum
courier__try_lock_group(PG_FUNCTION_ARGS)
{
	text	   *group = PG_GETARG_TEXT_PP(1);

	PG_RETURN_BOOL(groups_try_lock(PG_GETARG_INT32(0), VARDATA_ANY(group),
								   VARSIZE_ANY_EXHDR(group), false));
}

PG_FUNCTION_INFO_V1(courier__unlock_group);
Datum
courier__unlock_group(PG_FUNCTION_ARGS)
{
	text	   *group = PG_GETARG_TEXT_PP(1);

	PG_RETURN_BOOL(groups_try_lock(PG_GETARG_INT32(0), VARDATA_ANY(group),
								   VARSIZE_ANY_EXHDR(group), true));
}
