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
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

#include "courier.h"

/* Which column of the message table a body goes to. */
typedef enum BodyColumn
{
	BODY_JSONB = 0,
	BODY_TEXT = 1,
	BODY_BYTEA = 2
} BodyColumn;

static BodyColumn
body_column(Oid typid)
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

/* The delay argument argno, or the queue's default delay when NULL. */
static int64
send_delay(FunctionCallInfo fcinfo, int argno, CourierQueue *queue)
{
	if (PG_ARGISNULL(argno))
		return queue->delay;
	return courier_interval_usecs(PG_GETARG_INTERVAL_P(argno), "delay", COURIER_MAX_DELAY_US);
}

/*
 * courier_enqueue
 *		Insert one message into a queue, in the current transaction, and
 *		arrange the wake-up of the queue's waiters at commit; returns its id.
 *
 * The caller has done courier_enter() and checked its right to send (a send
 * checks the caller's privilege on the queue; a publish the caller's right
 * to publish to the topic).  The body and attributes are checked here, so
 * every way into a queue applies the same rules.
 */
int64
courier_enqueue(CourierQueue *queue, const CourierMessage *msg)
{
	static Oid	argtypes[8] = {TIMESTAMPTZOID, TIMESTAMPTZOID, JSONBOID, TEXTOID, BYTEAOID, JSONBOID,
	INT4OID, CHAROID};
	BodyColumn	column = body_column(msg->body_type);
	SPIPlanPtr	plan;
	Datum		values[8];
	char		nulls[8] = {' ', ' ', 'n', 'n', 'n', 'n', 'n', 'n'};
	TimestampTz now;
	bool		isnull;

	if (msg->attributes != NULL)
		check_attributes(msg->attributes);
	check_body_size(queue, msg->body, column);

	now = GetCurrentTimestamp();
	values[0] = TimestampTzGetDatum(now);
	values[1] = TimestampTzGetDatum(now + (msg->delay_us < 0 ? queue->delay : msg->delay_us));
	if (queue->key_id != 0)
	{
		/* encrypted: the ciphertext goes to body_bytes (crypto.c) */
		char		type;

		values[2 + BODY_BYTEA] = crypto_seal(queue, msg->body, msg->body_type, &type);
		nulls[2 + BODY_BYTEA] = ' ';
		values[6] = Int32GetDatum(queue->key_id);
		values[7] = CharGetDatum(type);
		nulls[6] = nulls[7] = ' ';
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

	plan = courier_plan(queue, PLAN_SEND,
						"INSERT INTO courier.q_%1$d"
						" (sent_at, visible_at, body, body_text, body_bytes, attributes, key_id,"
						"  body_type)"
						" VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING msg_id",
						8, argtypes);
	if (courier_execute(plan, values, nulls, false, SPI_OK_INSERT_RETURNING) != 1)
		elog(ERROR, "pg_courier: send inserted " UINT64_FORMAT " rows", SPI_processed);
	wait_signal_queue(queue, WAKE_ON_COMMIT | NOTIFY_ON_COMMIT);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * courier.send(queue_name text, body jsonb|text|bytea, attributes jsonb,
 *				delay interval) RETURNS bigint
 *		Enqueue one message; returns its id.
 *
 * Takes only the locks of an INSERT into the queue's message table.
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
 * courier.send_batch(queue_name text, bodies jsonb[]|text[]|bytea[],
 *					  attributes jsonb[], delay interval) RETURNS bigint[]
 *		Enqueue many messages in one INSERT; returns their ids in the order
 *		of bodies.
 *
 * Every body and attribute set is checked before anything is written, so a
 * bad element leaves the queue unchanged.
 */
PG_FUNCTION_INFO_V1(courier_send_batch);
Datum
courier_send_batch(PG_FUNCTION_ARGS)
{
	static Oid	argtypes[8] = {TIMESTAMPTZOID, TIMESTAMPTZOID, JSONBARRAYOID, TEXTARRAYOID,
	BYTEAARRAYOID, JSONBARRAYOID, INT4OID, CHAROID};
	text	   *name = courier_arg_text(fcinfo, 0, "queue name");
	ArrayType  *bodies;
	BodyColumn	column;
	Datum	   *body_values;
	bool	   *body_nulls;
	int			nbodies;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	CourierCall call;
	CourierQueue *queue;
	SPIPlanPtr	plan;
	Datum		values[8];
	char		nulls[8] = {' ', ' ', 'n', 'n', 'n', 'n', 'n', 'n'};
	TimestampTz now;
	int64	   *ids;

	courier_arg_notnull(fcinfo, 1, "message bodies");
	bodies = PG_GETARG_ARRAYTYPE_P(1);
	column = body_column(ARR_ELEMTYPE(bodies));
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

	if (!PG_ARGISNULL(2))
	{
		ArrayType  *attributes = PG_GETARG_ARRAYTYPE_P(2);
		Datum	   *attr_values;
		bool	   *attr_nulls;
		int			nattrs;

		deconstruct_array(attributes, JSONBOID, -1, false, TYPALIGN_INT,
						  &attr_values, &attr_nulls, &nattrs);
		if (ARR_NDIM(attributes) > 1 || nattrs != nbodies)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("attributes array must have one element per message body"),
					 errdetail("There are %d bodies and %d attribute sets.", nbodies, nattrs)));
		for (int i = 0; i < nattrs; i++)
			if (!attr_nulls[i])
				check_attributes(DatumGetJsonbP(attr_values[i]));
		values[5] = PointerGetDatum(attributes);
		nulls[5] = ' ';
	}

	/* allocated here: SPI_finish frees what is allocated while connected */
	ids = palloc(sizeof(int64) * (nbodies + 1));

	courier_enter(&call);
	queue = courier_lookup_queue(name, false);
	courier_check_privilege(&call, queue, COURIER_PRIV_SEND);
	for (int i = 0; i < nbodies; i++)
		check_body_size(queue, body_values[i], column);

	if (nbodies == 0)
	{
		courier_leave(&call);
		PG_RETURN_ARRAYTYPE_P(construct_empty_array(INT8OID));
	}

	now = GetCurrentTimestamp();
	values[0] = TimestampTzGetDatum(now);
	values[1] = TimestampTzGetDatum(now + send_delay(fcinfo, 3, queue));
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
		values[6] = Int32GetDatum(queue->key_id);
		values[7] = CharGetDatum(type);
		nulls[6] = nulls[7] = ' ';
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
						" (sent_at, visible_at, body, body_text, body_bytes, attributes, key_id,"
						"  body_type)"
						" SELECT $1, $2, b.j, b.t, b.y, b.a, $7, $8"
						"   FROM ROWS FROM (pg_catalog.unnest($3), pg_catalog.unnest($4), pg_catalog.unnest($5),"
						"                   pg_catalog.unnest($6)) WITH ORDINALITY AS b(j, t, y, a, n)"
						"  ORDER BY b.n RETURNING msg_id",
						8, argtypes);
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
