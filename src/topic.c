/*-------------------------------------------------------------------------
 *
 * topic.c
 *	  Topics: courier.create_topic(), drop_topic(), grant_topic(),
 *	  revoke_topic(), has_topic_privilege(), subscribe(), alter_subscription(),
 *	  unsubscribe() and publish().
 *
 * publish() delivers one message into every subscribed queue whose filter
 * policy matches, through courier_enqueue() (send.c), in the caller's
 * transaction: a rollback delivers nothing anywhere.  Each delivery is an
 * INSERT into that queue's own message table, so publishing takes only the
 * row-exclusive locks of those inserts, and subscribers never share a row:
 * a subscriber queue with a long backlog, in-flight leases or a purge
 * behind it does not change what the others get.
 *
 * FIFO topics deliver only to FIFO queues, passing the publish's group_id
 * and dedup_id on: each subscriber queue keeps its groups in commit order
 * and deduplicates within its own dedup window.  Deliveries take the group
 * locks of the subscriber queues in subscription order, so two publishers
 * of one group are ordered alike in every queue and cannot deadlock on
 * each other.
 *
 * Privileges.  The caller needs publish on the topic; the subscriber
 * queues' grants are not consulted per message: the right to send into a
 * queue was checked when it was subscribed (subscribe needs subscribe on
 * the topic and send on the queue).
 *
 * Cache.  Topics, their grants and their subscriptions with compiled
 * filter policies (filter.c) are cached per backend in CacheMemoryContext,
 * one memory context per topic.  Any change to courier.topic, topic_grant
 * or subscription fires a statement trigger that queues a relcache
 * invalidation of courier.topic; the callback marks the cache stale and the
 * next lookup rebuilds it.  A lookup first accepts pending invalidations,
 * so each publish sees the subscriptions committed before it started, also
 * inside a longer transaction.  Entries are never freed while a call uses
 * them: only a lookup resets the cache.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "common/base64.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "courier.h"
#include "filter.h"

/* Topic privileges, as a bit mask; admin implies the others. */
#define TOPIC_PRIV_PUBLISH		0x01
#define TOPIC_PRIV_SUBSCRIBE	0x02
#define TOPIC_PRIV_ADMIN		0x04

/* publish adds these attributes to every delivered message */
#define ATTR_PUBLISH_ID			"courier.publish_id"
#define ATTR_TOPIC				"courier.topic"
#define RESERVED_ATTR_PREFIX	"courier."
#define PUBLISH_MAX_ATTRIBUTES	(COURIER_MAX_ATTRIBUTES - 2)

typedef struct TopicSubscription
{
	int64		subscription_id;
	text	   *queue_name;
	bool		raw;
	bool		body_scope;
	CourierFilter *filter;		/* NULL: every message */
} TopicSubscription;

/* One topic, as cached by a backend. */
typedef struct CourierTopic
{
	char		name[COURIER_MAX_NAME + 4];	/* hash key */
	int32		topic_id;
	bool		fifo;
	MemoryContext cxt;			/* holds everything below */
	int			ngrants;
	CourierGrant *grants;
	int			nsubscriptions;
	TopicSubscription *subscriptions;
} CourierTopic;

static HTAB *topic_cache = NULL;
static bool topic_cache_stale = false;

/* courier.topic and courier.publish_id_seq, looked up once per backend */
static Oid	topic_relid = InvalidOid;
static Oid	publish_seq_relid = InvalidOid;

static void
lookup_topic_relids(void)
{
	Oid			nspid = get_namespace_oid("courier", false);

	topic_relid = get_relname_relid("topic", nspid);
	publish_seq_relid = get_relname_relid("publish_id_seq", nspid);
	if (!OidIsValid(topic_relid) || !OidIsValid(publish_seq_relid))
		elog(ERROR, "pg_courier catalog courier.topic or courier.publish_id_seq is missing");
}

/*
 * Relcache invalidation callback: a change to courier.topic (or a cache
 * reset) makes the whole topic cache stale.  Frees nothing: a call may be
 * using an entry.
 */
void
courier_topic_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == topic_relid)
	{
		topic_cache_stale = true;
		topic_relid = InvalidOid;
		publish_seq_relid = InvalidOid;
	}
}

static void
reset_topic_cache(void)
{
	HASH_SEQ_STATUS status;
	CourierTopic *topic;
	HASHCTL		ctl;

	if (topic_cache != NULL)
	{
		hash_seq_init(&status, topic_cache);
		while ((topic = hash_seq_search(&status)) != NULL)
			MemoryContextDelete(topic->cxt);
		hash_destroy(topic_cache);
	}
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = COURIER_MAX_NAME + 4;
	ctl.entrysize = sizeof(CourierTopic);
	ctl.hcxt = CacheMemoryContext;
	topic_cache = hash_create("pg_courier topics", 16, &ctl,
							  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	topic_cache_stale = false;
}

static void
execute_select(const char *sql, Oid argtype, Datum arg)
{
	int			ret = SPI_execute_with_args(sql, 1, &argtype, &arg, NULL, true, 0);

	if (ret != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(ret));
}

/*
 * Loads a topic (topic_id 0 if there is none), compiling the filter
 * policies of its subscriptions.  Everything goes into a new context, which
 * joins CacheMemoryContext only once the load succeeded.
 */
static void
load_topic(CourierTopic *topic)
{
	MemoryContext cxt;
	MemoryContext old;
	bool		isnull;

	execute_select("SELECT topic_id, fifo FROM courier.topic WHERE topic_name = $1",
				   TEXTOID, CStringGetTextDatum(topic->name));
	if (SPI_processed == 0)
	{
		topic->topic_id = 0;
		return;
	}
	topic->topic_id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
												  1, &isnull));
	topic->fifo = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
											 2, &isnull));
	cxt = AllocSetContextCreate(CurrentMemoryContext, "pg_courier topic", ALLOCSET_SMALL_SIZES);
	topic->cxt = cxt;

	execute_select("SELECT grantee::oid,"
				   "       pg_catalog.bit_or(CASE privilege WHEN 'publish' THEN 1"
				   "                         WHEN 'subscribe' THEN 2 ELSE 7 END)"
				   "  FROM courier.topic_grant WHERE topic_id = $1 GROUP BY grantee",
				   INT4OID, Int32GetDatum(topic->topic_id));
	topic->ngrants = SPI_processed;
	topic->grants = MemoryContextAllocZero(cxt, sizeof(CourierGrant) * (SPI_processed + 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];

		topic->grants[i].grantee =
			DatumGetObjectId(SPI_getbinval(tuple, SPI_tuptable->tupdesc, 1, &isnull));
		topic->grants[i].privileges =
			DatumGetInt32(SPI_getbinval(tuple, SPI_tuptable->tupdesc, 2, &isnull));
	}

	execute_select("SELECT s.subscription_id, q.queue_name, s.raw, s.filter_scope = 'body',"
				   "       s.filter_policy"
				   "  FROM courier.subscription s JOIN courier.queue q USING (queue_id)"
				   " WHERE s.topic_id = $1 ORDER BY s.subscription_id",
				   INT4OID, Int32GetDatum(topic->topic_id));
	topic->nsubscriptions = SPI_processed;
	topic->subscriptions = MemoryContextAllocZero(cxt, sizeof(TopicSubscription) *
												  (SPI_processed + 1));
	old = MemoryContextSwitchTo(cxt);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	tupdesc = SPI_tuptable->tupdesc;
		TopicSubscription *sub = &topic->subscriptions[i];
		Datum		policy;

		sub->subscription_id = DatumGetInt64(SPI_getbinval(tuple, tupdesc, 1, &isnull));
		sub->queue_name = DatumGetTextPCopy(SPI_getbinval(tuple, tupdesc, 2, &isnull));
		sub->raw = DatumGetBool(SPI_getbinval(tuple, tupdesc, 3, &isnull));
		sub->body_scope = DatumGetBool(SPI_getbinval(tuple, tupdesc, 4, &isnull));
		policy = SPI_getbinval(tuple, tupdesc, 5, &isnull);
		if (!isnull)
			sub->filter = filter_compile(DatumGetJsonbP(policy), sub->body_scope);
	}
	MemoryContextSwitchTo(old);
	MemoryContextSetParent(cxt, CacheMemoryContext);
}

/*
 * The cached entry of a topic, loading it if needed; NULL for an unknown
 * topic if missing_ok, else undefined_object.  Between courier_enter() and
 * courier_leave(); the entry stays valid until the next lookup.
 */
static CourierTopic *
lookup_topic(text *name, bool missing_ok)
{
	char		key[COURIER_MAX_NAME + 4];
	int			len = VARSIZE_ANY_EXHDR(name);
	CourierTopic *topic;

	courier_check_object_name("topic", VARDATA_ANY(name), len);
	memset(key, 0, sizeof(key));
	memcpy(key, VARDATA_ANY(name), len);

	AcceptInvalidationMessages();
	if (!OidIsValid(topic_relid))
		lookup_topic_relids();
	if (topic_cache == NULL || topic_cache_stale)
		reset_topic_cache();

	topic = hash_search(topic_cache, key, HASH_FIND, NULL);
	if (topic == NULL)
	{
		CourierTopic loaded;
		bool		found;

		memset(&loaded, 0, sizeof(loaded));
		memcpy(loaded.name, key, sizeof(key));
		load_topic(&loaded);
		if (loaded.topic_id == 0)
		{
			if (missing_ok)
				return NULL;
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("topic \"%s\" does not exist", key)));
		}
		topic = hash_search(topic_cache, key, HASH_ENTER, &found);
		memcpy(topic, &loaded, sizeof(loaded));
	}
	return topic;
}

static const char *
topic_privilege_name(int privilege)
{
	return privilege == TOPIC_PRIV_PUBLISH ? "publish" :
		privilege == TOPIC_PRIV_SUBSCRIBE ? "subscribe" : "admin";
}

static bool
topic_has_privilege(Oid roleid, CourierTopic *topic, int privilege)
{
	return courier_grants_allow(roleid, topic->grants, topic->ngrants, privilege);
}

static void
topic_check_privilege(CourierCall *call, CourierTopic *topic, int privilege)
{
	if (!topic_has_privilege(call->caller, topic, privilege))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for topic \"%s\"", topic->name),
				 errhint("A topic admin grants access with courier.grant_topic('%s', role, '%s').",
						 topic->name, topic_privilege_name(privilege))));
}

/* Looks the topic up and checks the caller holds privilege on it. */
static CourierTopic *
checked_topic(CourierCall *call, text *name, int privilege)
{
	CourierTopic *topic = lookup_topic(name, false);

	topic_check_privilege(call, topic, privilege);
	return topic;
}

/*
 * courier.create_topic(topic_name text, fifo boolean) RETURNS void
 *		Create a topic; a caller who is not a superuser becomes its admin.
 *		Who may create topics is decided by EXECUTE on this function.
 */
PG_FUNCTION_INFO_V1(courier_create_topic);
Datum
courier_create_topic(PG_FUNCTION_ARGS)
{
	text	   *name = courier_arg_text(fcinfo, 0, "topic name");
	Oid			argtypes[3] = {TEXTOID, REGROLEOID, BOOLOID};
	Datum		values[3];
	bool		isnull[3] = {false, false, false};
	CourierCall call;

	courier_check_object_name("topic", VARDATA_ANY(name), VARSIZE_ANY_EXHDR(name));
	courier_arg_notnull(fcinfo, 1, "fifo");
	values[2] = PG_GETARG_DATUM(1);
	courier_enter(&call);
	if (lookup_topic(name, true) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("topic \"%s\" already exists", text_to_cstring(name))));
	values[0] = PointerGetDatum(name);
	values[1] = ObjectIdGetDatum(call.caller);
	isnull[1] = superuser_arg(call.caller);
	courier_run_internal("SELECT courier._create_topic($1, $2, $3)", 3, argtypes, values, isnull);
	courier_leave(&call);
	PG_RETURN_VOID();
}

/*
 * courier.drop_topic(topic_name text) RETURNS void
 *		Drop a topic, its grants and its subscriptions (a NOTICE names
 *		each); messages already delivered stay in their queues.  Needs admin.
 */
PG_FUNCTION_INFO_V1(courier_drop_topic);
Datum
courier_drop_topic(PG_FUNCTION_ARGS)
{
	text	   *name = courier_arg_text(fcinfo, 0, "topic name");
	Oid			argtype = INT4OID;
	Datum		value;
	bool		isnull = false;
	CourierCall call;

	courier_enter(&call);
	value = Int32GetDatum(checked_topic(&call, name, TOPIC_PRIV_ADMIN)->topic_id);
	courier_run_internal("SELECT courier._drop_topic($1)", 1, &argtype, &value, &isnull);
	courier_leave(&call);
	PG_RETURN_VOID();
}

/* Shared by grant_topic and revoke_topic: privilege may be NULL only for revoke. */
static void
change_topic_grant(FunctionCallInfo fcinfo, const char *internal)
{
	Oid			argtypes[3] = {INT4OID, REGROLEOID, TEXTOID};
	Datum		values[3];
	bool		isnull[3] = {false, false, false};
	text	   *name = courier_arg_text(fcinfo, 0, "topic name");
	CourierCall call;

	courier_arg_notnull(fcinfo, 1, "role");
	values[1] = PG_GETARG_DATUM(1);
	values[2] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	isnull[2] = PG_ARGISNULL(2);
	courier_enter(&call);
	values[0] = Int32GetDatum(checked_topic(&call, name, TOPIC_PRIV_ADMIN)->topic_id);
	courier_run_internal(internal, 3, argtypes, values, isnull);
	courier_leave(&call);
}

/*
 * courier.grant_topic(topic_name text, role_name regrole, privilege text)
 *	 RETURNS void
 *		Allow a role to publish to, subscribe queues to, or administer a
 *		topic; needs admin on the topic.
 */
PG_FUNCTION_INFO_V1(courier_grant_topic);
Datum
courier_grant_topic(PG_FUNCTION_ARGS)
{
	courier_arg_notnull(fcinfo, 2, "privilege");
	change_topic_grant(fcinfo, "SELECT courier._grant_topic($1, $2, $3)");
	PG_RETURN_VOID();
}

/*
 * courier.revoke_topic(topic_name text, role_name regrole, privilege text)
 *	 RETURNS void
 *		Take a privilege (NULL: all) on a topic away from a role.
 *		Subscriptions the role made stay.
 */
PG_FUNCTION_INFO_V1(courier_revoke_topic);
Datum
courier_revoke_topic(PG_FUNCTION_ARGS)
{
	change_topic_grant(fcinfo, "SELECT courier._revoke_topic($1, $2, $3)");
	PG_RETURN_VOID();
}

static int
parse_topic_privilege(const char *privilege)
{
	if (strcmp(privilege, "publish") == 0)
		return TOPIC_PRIV_PUBLISH;
	if (strcmp(privilege, "subscribe") == 0)
		return TOPIC_PRIV_SUBSCRIBE;
	if (strcmp(privilege, "admin") == 0)
		return TOPIC_PRIV_ADMIN;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unrecognized topic privilege \"%s\"", privilege),
			 errhint("Valid privileges are publish, subscribe and admin.")));
	pg_unreachable();
}

/*
 * courier.has_topic_privilege(topic_name text, privilege text) RETURNS boolean
 *		Whether the current user holds privilege ('publish', 'subscribe' or
 *		'admin') on the topic.
 */
PG_FUNCTION_INFO_V1(courier_has_topic_privilege);
Datum
courier_has_topic_privilege(PG_FUNCTION_ARGS)
{
	text	   *name = courier_arg_text(fcinfo, 0, "topic name");
	int			mask = parse_topic_privilege(text_to_cstring(courier_arg_text(fcinfo, 1,
																			  "privilege")));
	CourierCall call;
	bool		result;

	courier_enter(&call);
	result = topic_has_privilege(call.caller, lookup_topic(name, false), mask);
	courier_leave(&call);
	PG_RETURN_BOOL(result);
}

/* filter_scope: 'attributes' (false) or 'body' (true) */
static bool
parse_filter_scope(text *scope)
{
	char	   *s = text_to_cstring(scope);

	if (strcmp(s, "attributes") == 0)
		return false;
	if (strcmp(s, "body") == 0)
		return true;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unrecognized filter_scope \"%s\"", s),
			 errhint("Valid values are attributes and body.")));
	pg_unreachable();
}

/*
 * courier.subscribe(topic_name text, queue text, filter jsonb, raw boolean,
 *					 filter_scope text) RETURNS bigint
 *		Subscribe a queue to a topic; returns the subscription id.
 *
 * The filter policy is validated here, before anything is looked up, so a
 * malformed one is refused with the path of its bad part.  Needs subscribe
 * on the topic and send on the queue.  A FIFO topic takes only FIFO queues,
 * a standard topic only standard queues.  Subscribing the same queue again
 * with the same settings returns the existing id.
 */
PG_FUNCTION_INFO_V1(courier_subscribe);
Datum
courier_subscribe(PG_FUNCTION_ARGS)
{
	text	   *topic_name = courier_arg_text(fcinfo, 0, "topic name");
	text	   *queue_name = courier_arg_text(fcinfo, 1, "queue name");
	Jsonb	   *policy = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	text	   *scope;
	bool		body_scope;
	Oid			argtypes[5] = {INT4OID, INT4OID, JSONBOID, TEXTOID, BOOLOID};
	Datum		values[5];
	bool		isnull[5] = {false, false, false, false, false};
	CourierCall call;
	CourierTopic *topic;
	CourierQueue *queue;
	int64		id;

	courier_arg_notnull(fcinfo, 3, "raw");
	scope = courier_arg_text(fcinfo, 4, "filter_scope");
	body_scope = parse_filter_scope(scope);
	if (policy != NULL)
		(void) filter_compile(policy, body_scope);

	courier_enter(&call);
	topic = checked_topic(&call, topic_name, TOPIC_PRIV_SUBSCRIBE);
	values[0] = Int32GetDatum(topic->topic_id);
	queue = courier_lookup_queue(queue_name, false);
	courier_check_privilege(&call, queue, COURIER_PRIV_SEND);
	if (queue->fifo != topic->fifo)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("%s topic \"%s\" cannot deliver to %s queue \"%s\"",
						topic->fifo ? "FIFO" : "standard", topic->name,
						queue->fifo ? "FIFO" : "standard", queue->name),
				 errhint("A FIFO topic delivers to FIFO queues only, a standard topic to standard queues only.")));
	values[1] = Int32GetDatum(queue->queue_id);
	values[2] = PointerGetDatum(policy);
	isnull[2] = (policy == NULL);
	values[3] = PointerGetDatum(scope);
	values[4] = PG_GETARG_DATUM(3);
	id = DatumGetInt64(courier_run_internal("SELECT courier._subscribe($1, $2, $3, $4, $5)",
											5, argtypes, values, isnull));
	courier_leave(&call);
	PG_RETURN_INT64(id);
}

/*
 * Looks a subscription up and checks that the caller may change it: admin
 * on the topic, or what subscribing needed (subscribe on the topic, send on
 * the queue).  Returns its policy (NULL: none) and scope.
 */
static void
checked_subscription(CourierCall *call, Datum id, Jsonb **policy, bool *body_scope)
{
	HeapTuple	tuple;
	TupleDesc	tupdesc;
	text	   *queue_name;
	CourierTopic *topic;
	Datum		value;
	bool		isnull;

	execute_select("SELECT t.topic_name, q.queue_name, s.filter_policy, s.filter_scope = 'body'"
				   "  FROM courier.subscription s"
				   "  JOIN courier.topic t USING (topic_id) JOIN courier.queue q USING (queue_id)"
				   " WHERE s.subscription_id = $1",
				   INT8OID, id);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("subscription " INT64_FORMAT " does not exist", DatumGetInt64(id))));
	tuple = SPI_tuptable->vals[0];
	tupdesc = SPI_tuptable->tupdesc;
	queue_name = DatumGetTextPCopy(SPI_getbinval(tuple, tupdesc, 2, &isnull));
	value = SPI_getbinval(tuple, tupdesc, 3, &isnull);
	*policy = isnull ? NULL : DatumGetJsonbPCopy(value);
	*body_scope = DatumGetBool(SPI_getbinval(tuple, tupdesc, 4, &isnull));
	topic = lookup_topic(DatumGetTextPCopy(SPI_getbinval(tuple, tupdesc, 1, &isnull)), false);
	if (!topic_has_privilege(call->caller, topic, TOPIC_PRIV_ADMIN))
	{
		topic_check_privilege(call, topic, TOPIC_PRIV_SUBSCRIBE);
		courier_check_privilege(call, courier_lookup_queue(queue_name, false), COURIER_PRIV_SEND);
	}
}

/*
 * courier.alter_subscription(subscription_id bigint, filter jsonb,
 *							  raw boolean, filter_scope text) RETURNS void
 *		Change a subscription's filter policy, delivery or scope (NULL keeps
 *		a setting; filter => '{}' lets every message through).  The policy
 *		that results is validated for the scope that results.  Takes effect
 *		for the next publish in every session.  Needs what unsubscribe needs.
 */
PG_FUNCTION_INFO_V1(courier_alter_subscription);
Datum
courier_alter_subscription(PG_FUNCTION_ARGS)
{
	Oid			argtypes[4] = {INT8OID, JSONBOID, TEXTOID, BOOLOID};
	Datum		values[4];
	bool		isnull[4] = {false, false, false, false};
	Jsonb	   *policy;
	bool		body_scope;
	CourierCall call;

	courier_arg_notnull(fcinfo, 0, "subscription id");
	values[0] = PG_GETARG_DATUM(0);
	courier_enter(&call);
	checked_subscription(&call, values[0], &policy, &body_scope);
	if (!PG_ARGISNULL(1))
		policy = PG_GETARG_JSONB_P(1);
	if (!PG_ARGISNULL(3))
		body_scope = parse_filter_scope(PG_GETARG_TEXT_PP(3));
	if (policy != NULL)
		(void) filter_compile(policy, body_scope);
	values[1] = PointerGetDatum(policy);
	isnull[1] = (policy == NULL);
	values[2] = CStringGetTextDatum(body_scope ? "body" : "attributes");
	values[3] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	isnull[3] = PG_ARGISNULL(2);
	courier_run_internal("SELECT courier._alter_subscription($1, $2, $3, $4)",
						 4, argtypes, values, isnull);
	courier_leave(&call);
	PG_RETURN_VOID();
}

/*
 * courier.unsubscribe(subscription_id bigint) RETURNS void
 *		Remove a subscription.  Needs admin on the topic, or what subscribing
 *		needed: subscribe on the topic and send on the queue.
 */
PG_FUNCTION_INFO_V1(courier_unsubscribe);
Datum
courier_unsubscribe(PG_FUNCTION_ARGS)
{
	Oid			argtype = INT8OID;
	Datum		id;
	bool		isnull = false;
	Jsonb	   *policy;
	bool		body_scope;
	CourierCall call;

	courier_arg_notnull(fcinfo, 0, "subscription id");
	id = PG_GETARG_DATUM(0);
	courier_enter(&call);
	checked_subscription(&call, id, &policy, &body_scope);
	courier_run_internal("SELECT courier._unsubscribe($1)", 1, &argtype, &id, &isnull);
	courier_leave(&call);
	PG_RETURN_VOID();
}

/*
 * Published attributes: a JSON object of at most 8 keys (publish adds two
 * of the 10 a message may have), none starting with "courier.", whose values
 * are strings, numbers or booleans.  Checked whether or not any subscriber
 * gets the message.
 */
static void
check_publish_attributes(Jsonb *attributes)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			prefix_len = strlen(RESERVED_ATTR_PREFIX);

	if (!JB_ROOT_IS_OBJECT(attributes))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("message attributes must be a JSON object")));
	if (JB_ROOT_COUNT(attributes) > PUBLISH_MAX_ATTRIBUTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a published message has at most %d attributes, not %d",
						PUBLISH_MAX_ATTRIBUTES, (int) JB_ROOT_COUNT(attributes)),
				 errdetail("Each delivery adds \"%s\" and \"%s\" to the %d attributes a message may have.",
						   ATTR_PUBLISH_ID, ATTR_TOPIC, COURIER_MAX_ATTRIBUTES)));
	it = JsonbIteratorInit(&attributes->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY && v.val.string.len >= prefix_len &&
			memcmp(v.val.string.val, RESERVED_ATTR_PREFIX, prefix_len) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("attribute names starting with \"%s\" are reserved",
							RESERVED_ATTR_PREFIX)));
		if (tok == WJB_VALUE && v.type != jbvString && v.type != jbvNumeric && v.type != jbvBool)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("message attribute values must be strings, numbers or booleans")));
	}
}

static void
push_key(JsonbParseState **state, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(state, WJB_KEY, &k);
}

static void
push_string(JsonbParseState **state, const char *s, int len)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) s;
	v.val.string.len = len;
	pushJsonbValue(state, WJB_VALUE, &v);
}

/* Pushes a whole jsonb document as a value (a scalar document as that scalar). */
static void
push_jsonb(JsonbParseState **state, Jsonb *jb)
{
	JsonbValue	v;

	if (JB_ROOT_IS_SCALAR(jb))
		JsonbExtractScalar(&jb->root, &v);
	else
	{
		v.type = jbvBinary;
		v.val.binary.data = &jb->root;
		v.val.binary.len = VARSIZE(jb) - VARHDRSZ;
	}
	pushJsonbValue(state, WJB_VALUE, &v);
}

/* The attributes of every delivery: the published ones, courier.publish_id and courier.topic. */
static Jsonb *
delivered_attributes(Jsonb *attributes, JsonbValue *publish_id, const char *topic)
{
	JsonbParseState *state = NULL;
	JsonbValue *result;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	if (attributes != NULL)
	{
		JsonbIterator *it = JsonbIteratorInit(&attributes->root);
		JsonbIteratorToken tok;
		JsonbValue	v;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
			if (tok == WJB_KEY || tok == WJB_VALUE)
				pushJsonbValue(&state, tok, &v);
	}
	push_key(&state, ATTR_PUBLISH_ID);
	pushJsonbValue(&state, WJB_VALUE, publish_id);
	push_key(&state, ATTR_TOPIC);
	push_string(&state, topic, strlen(topic));
	result = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(result);
}

/*
 * The envelope delivered to subscriptions with raw => false:
 * {"topic", "publish_id", "published_at", "attributes", "body", "body_type"}.
 * A jsonb body is embedded as JSON, a text body as a JSON string, a bytea
 * body as a base64 string; body_type says which ("jsonb", "text", "bytea").
 */
static Jsonb *
envelope(const char *topic, JsonbValue *publish_id, TimestampTz published_at,
		 Jsonb *attributes, Datum body, Oid body_type)
{
	JsonbParseState *state = NULL;
	JsonbValue *result;
	const char *type_name;
	char	   *at = JsonEncodeDateTime(NULL, TimestampTzGetDatum(published_at),
										TIMESTAMPTZOID, NULL);

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	push_key(&state, "topic");
	push_string(&state, topic, strlen(topic));
	push_key(&state, "publish_id");
	pushJsonbValue(&state, WJB_VALUE, publish_id);
	push_key(&state, "published_at");
	push_string(&state, at, strlen(at));
	push_key(&state, "attributes");
	if (attributes != NULL)
		push_jsonb(&state, attributes);
	else
	{
		pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
		pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	}
	push_key(&state, "body");
	if (body_type == JSONBOID)
		push_jsonb(&state, DatumGetJsonbP(body));
	else if (body_type == TEXTOID)
	{
		text	   *t = DatumGetTextPP(body);

		push_string(&state, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
	}
	else
	{
		bytea	   *b = DatumGetByteaPP(body);
		int			len = VARSIZE_ANY_EXHDR(b);
		int			enclen = pg_b64_enc_len(len);
		char	   *enc = palloc(enclen + 1);
		int			n = pg_b64_encode(VARDATA_ANY(b), len, enc, enclen);

		if (n < 0)
			elog(ERROR, "pg_courier: base64 encoding failed");
		push_string(&state, enc, n);
	}
	type_name = body_type == JSONBOID ? "jsonb" : body_type == TEXTOID ? "text" : "bytea";
	push_key(&state, "body_type");
	push_string(&state, type_name, strlen(type_name));
	result = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(result);
}

/*
 * The rules of group_id and dedup_id on a topic, checked whether or not
 * any subscriber gets the message: a FIFO topic needs a group_id, dedup_id
 * is for FIFO topics only, and both have the form FIFO queues want (which
 * groups_check_message() checks, given a stand-in queue of the topic's kind).
 */
static void
check_publish_ids(CourierTopic *topic, text *group_id, text *dedup_id)
{
	CourierQueue standin;
	CourierMessage msg = {0};

	if (topic->fifo && group_id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("a message published to FIFO topic \"%s\" needs a group_id", topic->name)));
	if (!topic->fifo && dedup_id != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("dedup_id applies only to FIFO topics"),
				 errdetail("Topic \"%s\" is a standard topic.", topic->name)));
	memset(&standin, 0, sizeof(standin));
	strlcpy(standin.name, topic->name, sizeof(standin.name));
	standin.fifo = topic->fifo;
	msg.group_id = group_id;
	msg.dedup_id = dedup_id;
	msg.delay_us = -1;
	groups_check_message(&standin, &msg);
}

/*
 * courier.publish(topic_name text, body jsonb|text|bytea, attributes jsonb,
 *				   group_id text, dedup_id text) RETURNS bigint
 *		Deliver a message to every subscription of the topic whose filter
 *		policy matches, in the caller's transaction; returns the publish id.
 *
 * Needs publish on the topic.  Takes the locks of one INSERT per matching
 * subscriber queue (and, on a FIFO topic, their group locks, in subscription
 * order).  An error in any delivery (a body too large for one subscriber
 * queue's max_message_size) fails the whole publish.  On a FIFO topic,
 * group_id and dedup_id go with every delivery; an enveloped delivery to a
 * queue with content_dedup is deduplicated by the published body, not by
 * the envelope (which differs in every publish).
 */
PG_FUNCTION_INFO_V1(courier_publish);
Datum
courier_publish(PG_FUNCTION_ARGS)
{
	text	   *name = courier_arg_text(fcinfo, 0, "topic name");
	Datum		body;
	Oid			body_type;
	Jsonb	   *attributes;
	Jsonb	   *json_body = NULL;
	Jsonb	   *delivered = NULL;
	Jsonb	   *wrapped = NULL;
	text	   *group_id;
	text	   *dedup_id;
	text	   *content_id = NULL;
	CourierCall call;
	CourierTopic *topic;
	TimestampTz now;
	int64		publish_id;
	JsonbValue	id_value;

	courier_arg_notnull(fcinfo, 1, "message body");
	body = PG_GETARG_DATUM(1);
	body_type = get_fn_expr_argtype(fcinfo->flinfo, 1);
	if (body_type != JSONBOID && body_type != TEXTOID && body_type != BYTEAOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("message body must be jsonb, text or bytea, not %s",
						format_type_be(body_type))));
	attributes = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	if (attributes != NULL)
		check_publish_attributes(attributes);
	group_id = PG_ARGISNULL(3) ? NULL : PG_GETARG_TEXT_PP(3);
	dedup_id = PG_ARGISNULL(4) ? NULL : PG_GETARG_TEXT_PP(4);
	if (body_type == JSONBOID)
	{
		json_body = DatumGetJsonbP(body);
		body = JsonbPGetDatum(json_body);
	}

	courier_enter(&call);
	topic = lookup_topic(name, false);
	topic_check_privilege(&call, topic, TOPIC_PRIV_PUBLISH);
	check_publish_ids(topic, group_id, dedup_id);
	if (!OidIsValid(publish_seq_relid))
		lookup_topic_relids();
	publish_id = nextval_internal(publish_seq_relid, false);
	now = GetCurrentTimestamp();
	id_value.type = jbvNumeric;
	id_value.val.numeric = DatumGetNumeric(DirectFunctionCall1(int8_numeric,
															   Int64GetDatum(publish_id)));

	for (int i = 0; i < topic->nsubscriptions; i++)
	{
		TopicSubscription *sub = &topic->subscriptions[i];
		CourierMessage msg = {0};
		CourierQueue *queue;

		if (sub->filter != NULL &&
			!filter_match(sub->filter, sub->body_scope ? json_body : attributes))
			continue;
		/* the queue cache may be rebuilt here, never the topic cache */
		queue = courier_lookup_queue(sub->queue_name, false);
		if (delivered == NULL)
			delivered = delivered_attributes(attributes, &id_value, topic->name);
		if (sub->raw)
		{
			msg.body = body;
			msg.body_type = body_type;
		}
		else
		{
			if (wrapped == NULL)
				wrapped = envelope(topic->name, &id_value, now, attributes, body, body_type);
			msg.body = JsonbPGetDatum(wrapped);
			msg.body_type = JSONBOID;
		}
		msg.attributes = delivered;
		msg.delay_us = -1;
		msg.group_id = group_id;
		msg.dedup_id = dedup_id;
		if (!sub->raw && queue->fifo && queue->content_dedup && dedup_id == NULL)
		{
			/* the content dedup id of the published body, as the queue would make it */
			if (content_id == NULL)
			{
				CourierMessage published = {0};

				published.body = body;
				published.body_type = body_type;
				published.group_id = group_id;
				published.delay_us = -1;
				groups_check_message(queue, &published);
				content_id = published.dedup_id;
			}
			msg.dedup_id = content_id;
		}
		(void) courier_enqueue(queue, &msg);
	}
	courier_leave(&call);
	PG_RETURN_INT64(publish_id);
}

/*
 * courier._invalidate_topic_cache() RETURNS trigger
 *		Statement trigger on courier.topic, topic_grant and subscription:
 *		every backend drops its topic cache when this transaction commits.
 */
PG_FUNCTION_INFO_V1(courier__invalidate_topic_cache);
Datum
courier__invalidate_topic_cache(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "courier._invalidate_topic_cache must be called as a trigger");
	if (!OidIsValid(topic_relid))
		lookup_topic_relids();
	CacheInvalidateRelcacheByRelid(topic_relid);
	return PointerGetDatum(NULL);
}
