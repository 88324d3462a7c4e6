/*-------------------------------------------------------------------------
 *
 * courier.h
 *	  Shared declarations of pg_courier.
 *
 * Every SQL-callable entry point follows the same pattern (see catalog.c):
 * check its arguments, courier_enter() (connect SPI, remember the caller,
 * switch to the extension owner with a pinned search_path), look the queue
 * up in the backend-local cache, check the caller's privilege, run cached
 * plans, courier_leave().  An error unwinds the user and GUC switches with
 * the (sub)transaction.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COURIER_H
#define COURIER_H

#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/tuplestore.h"
#include "utils/timestamp.h"

#define COURIER_MAX_NAME		80

/* Queue privileges, as a bit mask; admin implies the others. */
#define COURIER_PRIV_SEND		0x01
#define COURIER_PRIV_RECEIVE	0x02
#define COURIER_PRIV_ADMIN		0x04

/* Limits shared by the C checks and the install script. */
#define COURIER_MAX_VISIBILITY_US	(12 * USECS_PER_HOUR)
#define COURIER_MAX_DELAY_US		(15 * USECS_PER_MINUTE)
#define COURIER_MAX_ATTRIBUTES		10
#define COURIER_MAX_ATTRIBUTE_KEY	256
#define COURIER_MAX_RECEIVE			1000

/* receive.c: how often a backend's receive scans a queue from its head */
#define COURIER_RESCAN_US			USECS_PER_SEC

/*
 * SQL for the retry delay of delivery number c under a queue's retry
 * policy, given as parameters: fixed, or doubling per delivery up to
 * max_delay; with jitter, a random 50-100% of it.
 */
#define COURIER_RETRY_DELAY_SQL(c, delay, exponential, max_delay, jitter) \
	"(CASE WHEN " delay " = '0'::pg_catalog.interval THEN '0'::pg_catalog.interval" \
	" ELSE (CASE WHEN " exponential " THEN LEAST(" max_delay ", " delay \
	" * pg_catalog.power(2::float8, LEAST((" c ") - 1, 30)::float8)) ELSE " delay " END)" \
	" * (CASE WHEN " jitter " THEN 0.5 + 0.5 * pg_catalog.random() ELSE 1.0::float8 END) END)"

/* Cached prepared plans of one queue, prepared on first use. */
typedef enum CourierPlan
{
	PLAN_SEND,
	PLAN_SEND_BATCH,
	PLAN_CANDIDATES,
	PLAN_LEASE,
	PLAN_ACK,
	PLAN_ACK_BATCH,
	PLAN_SET_VISIBILITY,
	PLAN_NEXT_VISIBLE,
	PLAN_DEAD_LETTER,
	PLAN_FIFO_CANDIDATES,
	PLAN_FIFO_LEASE,
	PLAN_GROUP_ADD,
	PLAN_GROUP_FORGET,
	PLAN_GROUP_MARKER,
	PLAN_DEDUP_CLAIM,
	PLAN_DEDUP_ORIGINAL,
	NUM_COURIER_PLANS
} CourierPlan;

typedef struct CourierGrant
{
	Oid			grantee;
	int			privileges;
} CourierGrant;

/* One queue, as cached by a backend (catalog.c). */
typedef struct CourierQueue
{
	char		name[COURIER_MAX_NAME + 4];	/* hash key */
	int32		queue_id;
	int64		visibility_timeout;		/* microseconds */
	int64		delay;					/* microseconds */
	int32		max_message_size;
	int			ngrants;
	CourierGrant *grants;				/* in CacheMemoryContext */
	SPIPlanPtr	plans[NUM_COURIER_PLANS];
	bool		notify;					/* NOTIFY courier_<queue_id> on commit of a send */
	int32		dead_letter_queue_id;	/* 0: no redrive policy */
	int32		max_receives;			/* PG_INT32_MAX: no redrive policy */
	bool		is_dead_letter_queue;	/* some queue's dead-letter queue */
	Interval	retry_delay;
	bool		retry_exponential;
	Interval	retry_max_delay;
	bool		retry_jitter;
	bool		fifo;					/* FIFO queue: message groups (groups.c) */
	bool		content_dedup;			/* FIFO: dedup by body hash without dedup_id */
	int64		dedup_window;			/* microseconds */
	bool		dead_letter_fifo;		/* the dead-letter queue is a FIFO queue */
	bool		groups_checked;			/* groups.c: group table known to be built */
	int32		key_id;				/* crypto.c: current data key version, 0: none */
	int64		scan_hint;			/* receive.c: where the next scan may start (an id; FIFO: a turn) */
	TimestampTz full_scan_at;		/* receive.c: when a scan last started at 0 */
} CourierQueue;

/* State saved by courier_enter() and restored by courier_leave(). */
typedef struct CourierCall
{
	Oid			caller;
	Oid			saved_userid;
	int			saved_sec_context;
	int			guc_nestlevel;
} CourierCall;

/* Which column a message body goes to: body, body_text, body_bytes (send.c). */
typedef enum BodyColumn
{
	BODY_JSONB = 0,
	BODY_TEXT = 1,
	BODY_BYTEA = 2
} BodyColumn;

/*
 * One message to enqueue (send.c).  The body is a jsonb, text or bytea
 * datum; attributes NULL for none; delay_us < 0 for the queue's default.
 */
typedef struct CourierMessage
{
	Datum		body;
	Oid			body_type;
	Jsonb	   *attributes;
	int64		delay_us;
	text	   *group_id;		/* NULL: none (required by FIFO queues) */
	text	   *dedup_id;		/* NULL: none (FIFO queues only) */
} CourierMessage;

/* send.c */
extern int64 courier_enqueue(CourierQueue *queue, CourierMessage *msg);
extern BodyColumn courier_body_column(Oid typid);

/* groups.c */
#define COURIER_MAX_GROUP_ID	128
extern void groups_check_message(CourierQueue *queue, CourierMessage *msg);
extern void groups_lock(CourierQueue *queue, text *group_id);
extern bool groups_try_lock(int32 queue_id, const char *group_id, int len, bool release);
extern void groups_add(CourierQueue *queue, text *group_id);
extern void groups_forget_if_empty(CourierQueue *queue, Datum group_id);
extern void groups_ensure_built(CourierQueue *queue);
extern bool groups_dedup_claim(CourierQueue *queue, CourierMessage *msg, int64 *msg_id);

/* catalog.c */
extern void courier_enter(CourierCall *call);
extern void courier_leave(CourierCall *call);
extern void courier_guard_plans(void);
extern CourierQueue *courier_lookup_queue(text *name, bool missing_ok);
extern void courier_check_privilege(CourierCall *call, CourierQueue *queue, int privilege);
extern bool courier_has_privilege(Oid roleid, CourierQueue *queue, int privilege);
extern CourierGrant *courier_load_grants(const char *sql, int32 id, const char *const *names,
										 int *ngrants);
extern SPIPlanPtr courier_plan(CourierQueue *queue, CourierPlan which, const char *sql_format,
							   int nargs, Oid *argtypes);
extern void courier_check_name(const char *name, int len);
extern void courier_check_object_name(const char *kind, const char *name, int len);
extern bool courier_grants_allow(Oid roleid, const CourierGrant *grants, int ngrants,
								 int privilege);
extern uint64 courier_execute(SPIPlanPtr plan, Datum *args, const char *nulls, bool read_only,
							  int expected);
extern Datum courier_int8_array(const int64 *values, int n);
extern Tuplestorestate *courier_materialize(FunctionCallInfo fcinfo, const char *fname,
											TupleDesc *tupdesc, MemoryContext *per_query);
extern text *courier_arg_text(FunctionCallInfo fcinfo, int argno, const char *what);
extern void courier_arg_notnull(FunctionCallInfo fcinfo, int argno, const char *what);
extern int64 courier_interval_usecs(Interval *interval, const char *what, int64 max_usecs);
extern void courier_relcache_callback(Datum arg, Oid relid);

/* queue.c */
extern Datum courier_run_internal(const char *sql, int nargs, Oid *argtypes, Datum *values,
								  bool *isnull);

/* topic.c */
extern void courier_topic_relcache_callback(Datum arg, Oid relid);

/* wait.c */
#define WAKE_ON_COMMIT		0x01
#define WAKE_ON_ABORT		0x02
#define NOTIFY_ON_COMMIT	0x04	/* also NOTIFY, if the queue has notify on: sends only */
extern void wait_signal_queue(CourierQueue *queue, int events);
extern void wait_signal_queue_id(int32 queue_id, bool notify, int events);
extern bool wait_enter_dead_letter_queue(CourierQueue *queue);
extern char *wait_channel_name(int32 queue_id);
extern void wait_xact_callback(XactEvent event, void *arg);
extern void wait_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
								  SubTransactionId parentSubid, void *arg);
extern void wait_begin(CourierQueue *queue);
extern void wait_end(CourierQueue *queue);
extern void wait_begin_id(int32 id);
extern void wait_end_id(int32 id);
extern bool wait_sleep(TimestampTz until);

/* crypto.c */
extern void crypto_init(void);
extern bool crypto_check_keyring_file(char **newval, void **extra, GucSource source);
extern void crypto_assign_keyring_file(const char *newval, void *extra);
extern void crypto_load_queue(CourierQueue *queue);
extern Datum crypto_seal(CourierQueue *queue, Datum body, Oid body_type, char *type);
extern bool crypto_open(CourierQueue *queue, int64 msg_id, int32 key_id, char body_type,
						Datum ciphertext, Datum *values, bool *nulls);

/* pg_courier.c */
extern int	courier_max_wait_ms;
extern char *courier_keyring_file;

/* ack.c */
extern bool courier_lock_message(int64 msg_id, bool wait);
extern void courier_unlock_message(int64 msg_id);
extern void courier_parse_receipt(const char *receipt, int64 *msg_id, int64 *token);

#endif							/* COURIER_H */
