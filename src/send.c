/*-------------------------------------------------------------------------
 *
 * send.c
 *	  courier.send() and courier.send_batch(): enqueue messages.
 *
 * A send is one INSERT into the queue's message table through a cached plan,
 * in the caller's transaction: it commits or rolls back with the caller's own
 * writes.  No row other than the new message is written, so concurrent
 * senders never wait on each other.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

#include "courier.h"

/*
 * courier_body_column
 *		Which body column (of a queue's or a stream's message table) a body of
 *		type typid goes to; any other type is refused.
 */
BodyColumn
courier_body_column(Oid typid)
{
	switch (typid)
	{
		case JSONBOID:
			return BODY_JSONB;
		case TEXTOID:
			return BODY_TEXT;
		case BYTEAOID:
			return BODY_BYTEA;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("message body must be jsonb, text or bytea, not %s",
							format_type_be(typid))));
	}
	pg_unreachable();
}

/*
 * Attributes are a JSON object of at most 10 keys, each mapping to a string,
 * number or boolean, as in SQS.  They are never encrypted and are used for
 * filtering and routing.
 */
static void
check_attributes(Jsonb *attributes)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (!JB_ROOT_IS_OBJECT(attributes) || JB_ROOT_IS_SCALAR(attributes))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("message attributes must be a JSON object")));
	if (JB_ROOT_COUNT(attributes) > COURIER_MAX_ATTRIBUTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a message has at most %d attributes, not %d",
						COURIER_MAX_ATTRIBUTES, (int) JB_ROOT_COUNT(attributes))));

	it = JsonbIteratorInit(&attributes->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			if (v.val.string.len < 1 || v.val.string.len > COURIER_MAX_ATTRIBUTE_KEY)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("message attribute names must have 1 to %d characters",
								COURIER_MAX_ATTRIBUTE_KEY)));
		}
		else if (tok == WJB_VALUE)
		{
			if (v.type != jbvString && v.type != jbvNumeric && v.type != jbvBool)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("message attribute values must be strings, numbers or booleans"),
						 errdetail("An attribute value is %s.",
								   v.type == jbvNull ? "null" : "an object or an array")));
		}
	}
}

/*
 * A body may have at most max_message_size bytes.  A jsonb body counts as
 * the smaller of its stored size and its JSON text, so that the limit means
 * what a user who wrote the JSON expects; the text is only produced when the
 * stored form is too large.
 */
static void
check_body_size(CourierQueue *queue, Datum body, BodyColumn column)
{
	Size		size = toast_raw_datum_size(body) - VARHDRSZ;

	if (size > (Size) queue->max_message_size && column == BODY_JSONB)
	{
		Jsonb	   *jb = DatumGetJsonbP(body);
		char	   *json = JsonbToCString(NULL, &jb->root, VARSIZE(jb));

		size = Min(size, strlen(json));
		pfree(json);
	}
	if (size > (Size) queue->max_message_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("message is too large for queue \"%s\"", queue->name),
				 errdetail("The body has %zu bytes; the queue's max_message_size is %d bytes.",
						   size, queue->max_message_size)));
}

/*
 * Checks a message before anything is written: group and dedup ids (which
 * may set the content dedup id), attributes, body size.
 */
static void
check_message(CourierQueue *queue, CourierMessage *msg)
{
	groups_check_message(queue, msg);
	if (msg->attributes != NULL)
		check_attributes(msg->attributes);
	check_body_size(queue, msg->body, courier_body_column(msg->body_type));
}

/*
 * Writes a checked message; see courier_enqueue.  On a FIFO queue, takes its
 * group lock first (groups.c), so that the id follows commit order within
 * the group; a duplicate is not written and its original's id returned.
 */
static int64
enqueue_checked(CourierQueue *queue, const CourierMessage *msg)
{
	static Oid	argtypes[10] = {TIMESTAMPTZOID, TIMESTAMPTZOID, JSONBOID, TEXTOID, BYTEAOID,
	JSONBOID, TEXTOID, INT8OID, INT4OID, CHAROID};
	BodyColumn	column = courier_body_column(msg->body_type);
	SPIPlanPtr	plan;
	Datum		values[10];
	char		nulls[10] = {' ', ' ', 'n', 'n', 'n', 'n', 'n', 'n', 'n', 'n'};
	TimestampTz now;
	bool		isnull;
	int64		msg_id;

	if (queue->fifo)
		groups_lock(queue, msg->group_id);
	if (msg->dedup_id != NULL)
	{
		if (!groups_dedup_claim(queue, (CourierMessage *) msg, &msg_id))
			return msg_id;
		values[7] = Int64GetDatum(msg_id);
		nulls[7] = ' ';
	}

	now = GetCurrentTimestamp();
	values[0] = TimestampTzGetDatum(now);
	values[1] = TimestampTzGetDatum(now + (msg->delay_us < 0 ? queue->delay : msg->delay_us));
	if (queue->key_id != 0)
	{
		/* encrypted: the ciphertext goes to body_bytes (crypto.c) */
		char		type;

		values[2 + BODY_BYTEA] = crypto_seal(queue, msg->body, msg->body_type, &type);
		nulls[2 + BODY_BYTEA] = ' ';
		values[8] = Int32GetDatum(queue->key_id);
		values[9] = CharGetDatum(type);
		nulls[8] = nulls[9] = ' ';
	}
	else
	{
		values[2 + column] = msg->body;
		nulls[2 + column] = ' ';
	}
	if (msg->attributes != NULL)
	{
		values[5] = JsonbPGetDatum(msg->attributes);
		nulls[5] = ' ';
	}
	if (msg->group_id != NULL)
	{
		values[6] = PointerGetDatum(msg->group_id);
		nulls[6] = ' ';
	}

	plan = courier_plan(queue, PLAN_SEND,
						"INSERT INTO courier.q_%1$d"
						" (msg_id, sent_at, visible_at, body, body_text, body_bytes, attributes, group_id,"
						"  key_id, body_type)"
						" VALUES (COALESCE($8, pg_catalog.nextval('courier.msg_id_seq')),"
						"         $1, $2, $3, $4, $5, $6, $7, $9, $10) RETURNING msg_id",
						10, argtypes);
	if (courier_execute(plan, values, nulls, false, SPI_OK_INSERT_RETURNING) != 1)
		elog(ERROR, "pg_courier: send inserted " UINT64_FORMAT " rows", SPI_processed);
	msg_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (queue->fifo)
		groups_add(queue, msg->group_id);
	wait_signal_queue(queue, WAKE_ON_COMMIT | NOTIFY_ON_COMMIT);
	return msg_id;
}

/*
 * courier_enqueue
 *		Insert one message into a queue, in the current transaction, and
 *		arrange the wake-up of the queue's waiters at commit; returns its id
 *		(on a FIFO queue, a duplicate's original id).
 *
 * The caller has done courier_enter() and checked its right to send (a send
 * checks the caller's privilege on the queue; a publish the caller's right
 * to publish to the topic).  The message is checked here, so every way into
 * a queue applies the same rules; msg->dedup_id may be set (content dedup).
 */
int64
courier_enqueue(CourierQueue *queue, CourierMessage *msg)
{
	check_message(queue, msg);
	return enqueue_checked(queue, msg);
}

/*
 * courier.send(queue_name text, body jsonb|text|bytea, attributes jsonb,
 *				delay interval, group_id text, dedup_id text) RETURNS bigint
 *		Enqueue one message; returns its id, or on a FIFO queue the id of
 *		the message first sent with the same dedup id within the window.
 *
 * Takes the locks of an INSERT into the queue's message table; on a FIFO
 * queue also the group lock (groups.c) until the transaction ends.
 */
PG_FUNCTION_INFO_V1(courier_send);
Datum
courier_send(PG_FUNCTION_ARGS)
{
	text	   *name = courier_arg_text(fcinfo, 0, "queue name");
	CourierMessage msg = {0};
	CourierCall call;
	CourierQueue *queue;
	int64		msg_id;

	courier_arg_notnull(fcinfo, 1, "message body");
	msg.body = PG_GETARG_DATUM(1);
	msg.body_type = get_fn_expr_argtype(fcinfo->flinfo, 1);
	msg.attributes = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	msg.delay_us = PG_ARGISNULL(3) ? -1 :
		courier_interval_usecs(PG_GETARG_INTERVAL_P(3), "delay", COURIER_MAX_DELAY_US);
	msg.group_id = PG_ARGISNULL(4) ? NULL : PG_GETARG_TEXT_PP(4);
	msg.dedup_id = PG_ARGISNULL(5) ? NULL : PG_GETARG_TEXT_PP(5);

	courier_enter(&call);
	queue = courier_lookup_queue(name, false);
	courier_check_privilege(&call, queue, COURIER_PRIV_SEND);
	msg_id = courier_enqueue(queue, &msg);
	courier_leave(&call);
	PG_RETURN_INT64(msg_id);
}

static int
cmp_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return (x > y) - (x < y);
}

/*
 * Deconstructs the optional array argument argno of send_batch, which must
 * have one element per body; returns false (and nothing) when it is NULL.
 */
static bool
batch_array(FunctionCallInfo fcinfo, int argno, Oid elemtype, const char *what, int nbodies,
			Datum **elems, bool **nulls)
{
	ArrayType  *array;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			n;

	if (PG_ARGISNULL(argno))
		return false;
	array = PG_GETARG_ARRAYTYPE_P(argno);
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	deconstruct_array(array, elemtype, typlen, typbyval, typalign, elems, nulls, &n);
	if (ARR_NDIM(array) > 1 || n != nbodies)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s array must have one element per message body", what),
				 errdetail("There are %d bodies and %d elements of %s.", nbodies, n, what)));
	return true;
}

/* send_batch on a FIFO queue: group locks in one order, so batches cannot deadlock */
static uint32 *lock_order_hashes;

static int
cmp_lock_order(const void *a, const void *b)
{
	uint32		x = lock_order_hashes[*(const int *) a];
	uint32		y = lock_order_hashes[*(const int *) b];

	return (x > y) - (x < y);
}

/*
 * courier.send_batch(queue_name text, bodies jsonb[]|text[]|bytea[],
 *					  attributes jsonb[], delay interval, group_ids text[],
 *					  dedup_ids text[]) RETURNS bigint[]
 *		Enqueue many messages; returns their ids in the order of bodies
 *		(on a FIFO queue a duplicate's element holds its original's id).
 *
 * Every message is checked before anything is written, so a bad element
 * leaves the queue unchanged.  A standard queue gets one INSERT; a FIFO
 * queue first takes the group locks of the batch in hash order, then
 * writes its messages one by one, in array order.
 */
PG_FUNCTION_INFO_V1(courier_send_batch);
Datum
courier_send_batch(PG_FUNCTION_ARGS)
{
	static Oid	argtypes[9] = {TIMESTAMPTZOID, TIMESTAMPTZOID, JSONBARRAYOID, TEXTARRAYOID,
	BYTEAARRAYOID, JSONBARRAYOID, TEXTARRAYOID, INT4OID, CHAROID};
	text	   *name = courier_arg_text(fcinfo, 0, "queue name");
	ArrayType  *bodies;
	BodyColumn	column;
	Datum	   *body_values;
	bool	   *body_nulls;
	int			nbodies;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	Datum	   *attr_values = NULL;
	bool	   *attr_nulls = NULL;
	Datum	   *group_values = NULL;
	bool	   *group_nulls = NULL;
	Datum	   *dedup_values = NULL;
	bool	   *dedup_nulls = NULL;
	bool		has_attrs;
	bool		has_groups;
	bool		has_dedups;
	int64		delay_us;
	CourierMessage *msgs;
	CourierCall call;
	CourierQueue *queue;
	SPIPlanPtr	plan;
	Datum		values[9];
	char		nulls[9] = {' ', ' ', 'n', 'n', 'n', 'n', 'n', 'n', 'n'};
	TimestampTz now;
	int64	   *ids;

	courier_arg_notnull(fcinfo, 1, "message bodies");
	bodies = PG_GETARG_ARRAYTYPE_P(1);
	column = courier_body_column(ARR_ELEMTYPE(bodies));
	if (ARR_NDIM(bodies) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("message bodies must be a one-dimensional array")));
	get_typlenbyvalalign(ARR_ELEMTYPE(bodies), &typlen, &typbyval, &typalign);
	deconstruct_array(bodies, ARR_ELEMTYPE(bodies), typlen, typbyval, typalign,
					  &body_values, &body_nulls, &nbodies);
	for (int i = 0; i < nbodies; i++)
		if (body_nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("message body must not be null"),
					 errdetail("Element %d of the bodies array is null.", i + 1)));
	has_attrs = batch_array(fcinfo, 2, JSONBOID, "attributes", nbodies, &attr_values, &attr_nulls);
	delay_us = PG_ARGISNULL(3) ? -1 :
		courier_interval_usecs(PG_GETARG_INTERVAL_P(3), "delay", COURIER_MAX_DELAY_US);
	has_groups = batch_array(fcinfo, 4, TEXTOID, "group_ids", nbodies, &group_values, &group_nulls);
	has_dedups = batch_array(fcinfo, 5, TEXTOID, "dedup_ids", nbodies, &dedup_values, &dedup_nulls);

	/* allocated here: SPI_finish frees what is allocated while connected */
	ids = palloc(sizeof(int64) * (nbodies + 1));
	msgs = palloc0(sizeof(CourierMessage) * (nbodies + 1));
	for (int i = 0; i < nbodies; i++)
	{
		msgs[i].body = body_values[i];
		msgs[i].body_type = ARR_ELEMTYPE(bodies);
		msgs[i].attributes = has_attrs && !attr_nulls[i] ? DatumGetJsonbP(attr_values[i]) : NULL;
		msgs[i].delay_us = delay_us;
		msgs[i].group_id = has_groups && !group_nulls[i] ? DatumGetTextPP(group_values[i]) : NULL;
		msgs[i].dedup_id = has_dedups && !dedup_nulls[i] ? DatumGetTextPP(dedup_values[i]) : NULL;
	}

	courier_enter(&call);
	queue = courier_lookup_queue(name, false);
	courier_check_privilege(&call, queue, COURIER_PRIV_SEND);
	for (int i = 0; i < nbodies; i++)
		check_message(queue, &msgs[i]);

	if (nbodies == 0)
	{
		courier_leave(&call);
		PG_RETURN_ARRAYTYPE_P(construct_empty_array(INT8OID));
	}

	if (queue->fifo)
	{
		int		   *order = palloc(sizeof(int) * nbodies);

		lock_order_hashes = palloc(sizeof(uint32) * nbodies);
		for (int i = 0; i < nbodies; i++)
		{
			order[i] = i;
			lock_order_hashes[i] = hash_bytes((const unsigned char *) VARDATA_ANY(msgs[i].group_id),
											  VARSIZE_ANY_EXHDR(msgs[i].group_id));
		}
		qsort(order, nbodies, sizeof(int), cmp_lock_order);
		for (int i = 0; i < nbodies; i++)
			groups_lock(queue, msgs[order[i]].group_id);
		for (int i = 0; i < nbodies; i++)
			ids[i] = enqueue_checked(queue, &msgs[i]);
		courier_leave(&call);
		PG_RETURN_DATUM(courier_int8_array(ids, nbodies));
	}

	now = GetCurrentTimestamp();
	values[0] = TimestampTzGetDatum(now);
	values[1] = TimestampTzGetDatum(now + (delay_us < 0 ? queue->delay : delay_us));
	if (has_attrs)
	{
		values[5] = PG_GETARG_DATUM(2);
		nulls[5] = ' ';
	}
	if (has_groups)
	{
		values[6] = PG_GETARG_DATUM(4);
		nulls[6] = ' ';
	}
	if (queue->key_id != 0)
	{
		/* encrypted: an array of ciphertexts goes to body_bytes (crypto.c) */
		Datum	   *sealed = palloc(sizeof(Datum) * nbodies);
		char		type = 'b';

		for (int i = 0; i < nbodies; i++)
			sealed[i] = crypto_seal(queue, body_values[i], ARR_ELEMTYPE(bodies), &type);
		values[2 + BODY_BYTEA] = PointerGetDatum(construct_array(sealed, nbodies, BYTEAOID, -1,
																 false, TYPALIGN_INT));
		nulls[2 + BODY_BYTEA] = ' ';
		values[7] = Int32GetDatum(queue->key_id);
		values[8] = CharGetDatum(type);
		nulls[7] = nulls[8] = ' ';
	}
	else
	{
		values[2 + column] = PointerGetDatum(bodies);
		nulls[2 + column] = ' ';
	}

	/*
	 * Rows are inserted in array order, and nextval() runs once per row as it
	 * is inserted, so sorting the returned ids gives them in array order.
	 */
	plan = courier_plan(queue, PLAN_SEND_BATCH,
						"INSERT INTO courier.q_%1$d"
						" (sent_at, visible_at, body, body_text, body_bytes, attributes, group_id,"
						"  key_id, body_type)"
						" SELECT $1, $2, b.j, b.t, b.y, b.a, b.g, $8, $9"
						"   FROM ROWS FROM (pg_catalog.unnest($3), pg_catalog.unnest($4), pg_catalog.unnest($5),"
						"                   pg_catalog.unnest($6), pg_catalog.unnest($7))"
						"        WITH ORDINALITY AS b(j, t, y, a, g, n)"
						"  ORDER BY b.n RETURNING msg_id",
						9, argtypes);
	if (courier_execute(plan, values, nulls, false, SPI_OK_INSERT_RETURNING) != (uint64) nbodies)
		elog(ERROR, "pg_courier: send_batch inserted " UINT64_FORMAT " rows", SPI_processed);
	wait_signal_queue(queue, WAKE_ON_COMMIT | NOTIFY_ON_COMMIT);

	for (int i = 0; i < nbodies; i++)
	{
		bool		isnull;

		ids[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
	}
	courier_leave(&call);

	qsort(ids, nbodies, sizeof(int64), cmp_int64);
	PG_RETURN_DATUM(courier_int8_array(ids, nbodies));
}
