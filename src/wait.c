/*-------------------------------------------------------------------------
 *
 * wait.c
 *	  Long polling: a receive that waits is woken by the commit of a send to
 *	  its queue, without LISTEN/NOTIFY and without polling.
 *
 * Protocol.  A waiting receive holds a ShareLock on the queue's wait tag
 * (an advisory-type lock tag with a private last field, COURIER_LOCKTAG_WAIT,
 * so it never collides with pg_advisory_* locks), then looks for messages,
 * then sleeps on its latch.  A transaction that sent to (or released a
 * message of) a queue remembers the queue; in its XACT_EVENT_COMMIT
 * callback, which runs once the commit is visible to others, it looks the
 * holders of that tag up with GetLockConflicts() and sets their latches.
 * A waiter that took the lock before that lookup is found and woken; one
 * that took it after looks for messages after the commit became visible and
 * sees the message.  So a wake-up is never lost, and only the waiters of
 * that queue are woken.  A rolled-back transaction wakes no one.
 *
 * A transaction that leased messages and aborts wakes the waiters too, as
 * its leases vanish.  Callbacks run before the transaction's locks are
 * released, so a woken waiter may still find a message locked: receive then
 * retries shortly (RECEIVE_LOCKED_RETRY_MS) instead of sleeping until its
 * deadline.
 *
 * The callbacks must not fail: they only read the lock table and set
 * latches.  COMMIT PREPARED runs no callback: waiters on a queue written by
 * a prepared transaction see its messages at their next wake-up or timeout.
 *
 * The same list of queues drives the optional NOTIFY on each queue's
 * channel, issued once per queue and transaction at pre-commit (NOTIFY
 * itself coalesces identical notifications).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/async.h"
#include "libpq/libpq-be.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "storage/sinvaladt.h"
#include "utils/memutils.h"

#include "courier.h"

#define COURIER_LOCKTAG_WAIT 0x5751
#define COURIER_LOCKTAG_REDRIVE 0x5244

/* Queues whose waiters this transaction must wake, and when. */
typedef struct SignalledQueue
{
	int32		queue_id;
	bool		notify;			/* NOTIFY at commit */
	int			events;			/* WAKE_ON_COMMIT | WAKE_ON_ABORT | NOTIFY_ON_COMMIT */
} SignalledQueue;

static SignalledQueue *signalled = NULL;
static int	nsignalled = 0;
static int	maxsignalled = 0;

static void
wait_locktag(LOCKTAG *tag, int32 queue_id)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) queue_id, 0, COURIER_LOCKTAG_WAIT);
}

/*
 * wait_signal_queue
 *		Remember that this transaction makes messages of queue available when
 *		it commits (a send, a release: WAKE_ON_COMMIT; a send adds
 *		NOTIFY_ON_COMMIT, which NOTIFYs if the queue has notify on) or when it
 *		aborts (a receive, whose leases vanish: WAKE_ON_ABORT), so that the
 *		queue's waiters are woken then.
 */
void
wait_signal_queue(CourierQueue *queue, int events)
{
	wait_signal_queue_id(queue->queue_id, queue->notify, events);
}

void
wait_signal_queue_id(int32 queue_id, bool notify, int events)
{
	for (int i = 0; i < nsignalled; i++)
		if (signalled[i].queue_id == queue_id)
		{
			signalled[i].events |= events;
			signalled[i].notify |= (notify && (events & NOTIFY_ON_COMMIT));
			return;
		}
	if (nsignalled == maxsignalled)
	{
		int			newmax = Max(8, maxsignalled * 2);

		if (signalled == NULL)
			signalled = MemoryContextAlloc(TopTransactionContext, sizeof(SignalledQueue) * newmax);
		else
			signalled = repalloc(signalled, sizeof(SignalledQueue) * newmax);
		maxsignalled = newmax;
	}
	signalled[nsignalled].queue_id = queue_id;
	signalled[nsignalled].notify = (notify && (events & NOTIFY_ON_COMMIT));
	signalled[nsignalled].events = events;
	nsignalled++;
}

/* The NOTIFY channel of a queue, as documented in the README. */
char *
wait_channel_name(int32 queue_id)
{
	return psprintf("courier_%d", queue_id);
}

/* Sets the latches of the backends waiting on a queue. */
static void
wake_waiters(int32 queue_id)
{
	LOCKTAG		tag;
	VirtualTransactionId *vxids;
	int			count;

	wait_locktag(&tag, queue_id);
	vxids = GetLockConflicts(&tag, ExclusiveLock, &count);
	for (int i = 0; i < count; i++)
	{
		PGPROC	   *proc;

#if PG_VERSION_NUM >= 170000
		proc = ProcNumberGetProc(vxids[i].procNumber);
#else
		proc = BackendIdGetProc(vxids[i].backendId);
#endif
		if (proc != NULL)
			SetLatch(&proc->procLatch);
	}
}

static void
wake_all(int events)
{
	for (int i = 0; i < nsignalled; i++)
		if (signalled[i].events & events)
			wake_waiters(signalled[i].queue_id);
}

/* Transaction callback, registered in _PG_init. */
void
wait_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			for (int i = 0; i < nsignalled; i++)
				if (signalled[i].notify)
				{
					char	   *channel = wait_channel_name(signalled[i].queue_id);

					Async_Notify(channel, NULL);
					pfree(channel);
				}
			break;
		case XACT_EVENT_COMMIT:
			wake_all(WAKE_ON_COMMIT);
			signalled = NULL;
			nsignalled = maxsignalled = 0;
			break;
		case XACT_EVENT_ABORT:
			wake_all(WAKE_ON_ABORT);
			signalled = NULL;
			nsignalled = maxsignalled = 0;
			break;
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* the list lived in TopTransactionContext, which is going away */
			signalled = NULL;
			nsignalled = maxsignalled = 0;
			break;
		default:
			break;
	}
}

/*
 * Subtransaction callback, registered in _PG_init: leases taken in a
 * subtransaction that rolls back vanish at once.
 */
void
wait_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					  SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		wake_all(WAKE_ON_ABORT);
}

/*
 * wait_begin / wait_end
 *		Announce (and withdraw) that this backend waits for messages of a
 *		queue.  wait_begin must come before the check for messages.
 */
void
wait_begin(CourierQueue *queue)
{
	wait_begin_id(queue->queue_id);
}

void
wait_end(CourierQueue *queue)
{
	wait_end_id(queue->queue_id);
}

/*
 * The same by id: streams (streamread.c) wait and signal as -stream_id, so
 * their tags never meet a queue's (queue ids are positive).
 */
void
wait_begin_id(int32 id)
{
	LOCKTAG		tag;

	wait_locktag(&tag, id);
	(void) LockAcquire(&tag, ShareLock, false, false);
}

void
wait_end_id(int32 id)
{
	LOCKTAG		tag;

	wait_locktag(&tag, id);
	LockRelease(&tag, ShareLock, false);
}

/*
 * wait_sleep
 *		Sleep until woken or until 'until'; returns whether the latch woke
 *		us.  Handles cancel and statement_timeout through CHECK_FOR_INTERRUPTS.
 */
bool
wait_sleep(TimestampTz until)
{
	long		timeout_ms;
	TimestampTz now = GetCurrentTimestamp();
	int			rc;

	CHECK_FOR_INTERRUPTS();
	if (until <= now)
		return false;
	timeout_ms = (long) ((until - now + 999) / 1000);
#ifdef WL_SOCKET_CLOSED
	/* a client that hangs up ends the wait at once, not at its end */
	if (MyProcPort != NULL && MyProcPort->sock != PGINVALID_SOCKET)
		rc = WaitLatchOrSocket(MyLatch,
							   WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH | WL_SOCKET_CLOSED,
							   MyProcPort->sock, timeout_ms, PG_WAIT_EXTENSION);
	else
#endif
		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					   timeout_ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
#ifdef WL_SOCKET_CLOSED
	if (rc & WL_SOCKET_CLOSED)
		ereport(FATAL,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("connection to client lost while courier.receive was waiting")));
#endif
	CHECK_FOR_INTERRUPTS();
	return (rc & WL_LATCH_SET) != 0;
}

/*
 * courier._signal_queue(queue_id integer, notify boolean) RETURNS void
 *		Wake the queue's waiters (and NOTIFY) when this transaction commits;
 *		for messages that SQL code (redrive) made available.
 */
PG_FUNCTION_INFO_V1(courier__signal_queue);
Datum
courier__signal_queue(PG_FUNCTION_ARGS)
{
	wait_signal_queue_id(PG_GETARG_INT32(0), PG_GETARG_BOOL(1), WAKE_ON_COMMIT | NOTIFY_ON_COMMIT);
	PG_RETURN_VOID();
}

static void
redrive_locktag(LOCKTAG *tag, int32 queue_id)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) queue_id, 0, COURIER_LOCKTAG_REDRIVE);
}

/*
 * courier._lock_for_redrive(queue_id integer) RETURNS void
 *		Keep receivers off a dead-letter queue until the end of the
 *		transaction, after waiting for those that received from it in
 *		transactions still open.
 */
PG_FUNCTION_INFO_V1(courier__lock_for_redrive);
Datum
courier__lock_for_redrive(PG_FUNCTION_ARGS)
{
	LOCKTAG		tag;

	redrive_locktag(&tag, PG_GETARG_INT32(0));
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
	PG_RETURN_VOID();
}

/*
 * wait_enter_dead_letter_queue
 *		Before receiving from a dead-letter queue: false while a redrive of
 *		it runs (the queue then looks empty); otherwise holds off redrives
 *		until this transaction ends.  Always true for other queues.
 */
bool
wait_enter_dead_letter_queue(CourierQueue *queue)
{
	LOCKTAG		tag;

	if (!queue->is_dead_letter_queue)
		return true;
	redrive_locktag(&tag, queue->queue_id);
	return LockAcquire(&tag, ShareLock, false, true) != LOCKACQUIRE_NOT_AVAIL;
}
