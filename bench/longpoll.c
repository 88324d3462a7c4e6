/*
 * longpoll.c: the long-polling benchmark of pg_courier (run it through bench/longpoll.sh).
 *
 *   1. wake-up latency: a waiting receive vs the sender's COMMIT
 *   2. idle CPU: 100 long-polling sessions (and 100 pg_sleep(20) loops beside them, the baseline)
 *      vs 100 sessions polling every 100 ms
 *   3. thundering herd: 100 waiters on one queue, one message
 *
 * Connects with the usual libpq environment (PGHOST, PGPORT, ...), as a superuser; the queues
 * lp, idle, idle2, idle3, herd and the function lp_read_with_poll must exist (longpoll.sh makes
 * them). Server CPU is read from /proc/<pid>/stat (utime+stime, in clock ticks) and
 * /proc/<pid>/schedstat (nanoseconds on CPU) of each session's backend, so the program must run
 * on the server's host, as root or as the server's OS user.
 *
 * Knobs (environment): LP_TRIALS (500), LP_IDLE_SECONDS (60), LP_SESSIONS (100), LP_POLL_MS (100),
 * LP_SERVER_POLL (0; 1: also measure a pgmq-style server-side poll loop), LP_HERD_WAITERS (100),
 * LP_HERD_ROUNDS (20), LP_HERD_MAX_SECONDS (45), LP_SKIP (any of "latency idle herd").
 *
 * Single-threaded: every connection is driven asynchronously (PQsendQuery) from one poll() loop,
 * which timestamps results with CLOCK_MONOTONIC as they arrive.
 */
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#define RECV_WAIT_SQL(q) "SELECT msg_id, receipt FROM courier.receive('" q "', 1, wait => '20 seconds')"

typedef struct Sess Sess;
typedef void (*done_fn) (Sess *s, void *ctx);

struct Sess
{
	PGconn	   *pg;
	int			pid;
	int			busy;			/* a query is in flight */
	int			phase;			/* role-specific */
	int			nrows;			/* rows returned by the query just completed */
	int			keep;			/* keep the last tuples result in res */
	PGresult   *res;
	char		receipt[256];	/* column 1 of the last row received */
	double		t_issued;
	double		t_done;			/* when the query's last result arrived */
	double		next_at;		/* pollers: when to poll next */
	long		n_calls;		/* receive calls completed */
	long		n_msgs;			/* messages received */
	long		n_empty;		/* receive calls that returned nothing */
	done_fn		done;
	void	   *ctx;
};

static void
die(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	fprintf(stderr, "longpoll: ");
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void
sleep_ms(double ms)
{
	struct timespec ts;

	if (ms <= 0)
		return;
	ts.tv_sec = (time_t) (ms / 1000);
	ts.tv_nsec = (long) ((ms - ts.tv_sec * 1000.0) * 1e6);
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int
env_int(const char *name, int dflt)
{
	const char *v = getenv(name);

	if (v == NULL || *v == '\0')
		return dflt;
	return atoi(v);
}

static int
skipped(const char *what)
{
	const char *v = getenv("LP_SKIP");

	return v != NULL && strstr(v, what) != NULL;
}

/* ---------------------------------------------------------------- /proc */

static int
read_small_file(const char *path, char *buf, size_t len)
{
	FILE	   *f = fopen(path, "r");
	size_t		n;

	if (f == NULL)
		return -1;
	n = fread(buf, 1, len - 1, f);
	fclose(f);
	buf[n] = '\0';
	return (int) n;
}

/* utime + stime of a process, in clock ticks */
static long long
proc_ticks(int pid)
{
	char		path[64],
				buf[1024],
			   *p;
	unsigned long long ut,
				st;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (read_small_file(path, buf, sizeof(buf)) < 0 || (p = strrchr(buf, ')')) == NULL)
		die("cannot read %s: %s", path, strerror(errno));
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		die("cannot parse %s", path);
	return (long long) (ut + st);
}

/* nanoseconds a process spent on a CPU (schedstat), -1 if unavailable */
static long long
proc_sched_ns(int pid)
{
	char		path[64],
				buf[256];
	unsigned long long ns;

	snprintf(path, sizeof(path), "/proc/%d/schedstat", pid);
	if (read_small_file(path, buf, sizeof(buf)) < 0 || sscanf(buf, "%llu", &ns) != 1)
		return -1;
	return (long long) ns;
}

/* voluntary context switches: how many times the process blocked (went to sleep) */
static long long
proc_vcsw(int pid)
{
	char		path[64],
				buf[4096],
			   *p;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	if (read_small_file(path, buf, sizeof(buf)) < 0 ||
		(p = strstr(buf, "\nvoluntary_ctxt_switches:")) == NULL)
		die("cannot read %s", path);
	return atoll(p + strlen("\nvoluntary_ctxt_switches:"));
}

static double
client_cpu_ms(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec * 1e3 + ru.ru_utime.tv_usec / 1e3 +
		ru.ru_stime.tv_sec * 1e3 + ru.ru_stime.tv_usec / 1e3;
}

/* ---------------------------------------------------------------- libpq */

static void
sess_open(Sess *s, const char *appname)
{
	char		conninfo[128];

	memset(s, 0, sizeof(*s));
	snprintf(conninfo, sizeof(conninfo), "application_name=%s", appname);
	s->pg = PQconnectdb(conninfo);
	if (PQstatus(s->pg) != CONNECTION_OK)
		die("connection failed: %s", PQerrorMessage(s->pg));
	s->pid = PQbackendPID(s->pg);
}

/* Close a session; a query in flight (a waiting receive) is cancelled first. */
static void
sess_close(Sess *s)
{
	if (s->pg == NULL)
		return;
	if (s->busy)
	{
		PGcancel   *c = PQgetCancel(s->pg);
		char		err[256];

		if (c != NULL)
		{
			PQcancel(c, err, sizeof(err));
			PQfreeCancel(c);
		}
	}
	if (s->res)
		PQclear(s->res);
	PQfinish(s->pg);
	s->pg = NULL;
}

static void
sess_send(Sess *s, const char *sql)
{
	if (!PQsendQuery(s->pg, sql))
		die("PQsendQuery: %s", PQerrorMessage(s->pg));
	s->busy = 1;
	s->nrows = 0;
	s->t_issued = now_ms();
}

static void
sess_send1(Sess *s, const char *sql, const char *param)
{
	if (!PQsendQueryParams(s->pg, sql, 1, NULL, &param, NULL, NULL, 0))
		die("PQsendQueryParams: %s", PQerrorMessage(s->pg));
	s->busy = 1;
	s->nrows = 0;
	s->t_issued = now_ms();
}

/* Synchronous query on an idle session; returns the result (caller clears). */
static PGresult *
sess_exec(Sess *s, const char *sql, const char *param)
{
	PGresult   *r;

	if (param)
		r = PQexecParams(s->pg, sql, 1, NULL, &param, NULL, NULL, 0);
	else
		r = PQexec(s->pg, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK)
		die("%s: %s", sql, PQresultErrorMessage(r));
	return r;
}

/* Collect what arrived for s; stamp t on completion and call its done callback. */
static void
sess_input(Sess *s, double t)
{
	if (!PQconsumeInput(s->pg))
		die("connection lost: %s", PQerrorMessage(s->pg));
	while (s->busy && !PQisBusy(s->pg))
	{
		PGresult   *r = PQgetResult(s->pg);

		if (r == NULL)
		{
			s->busy = 0;
			s->t_done = t;
			if (s->done)
				s->done(s, s->ctx);
			return;
		}
		switch (PQresultStatus(r))
		{
			case PGRES_TUPLES_OK:
				s->nrows += PQntuples(r);
				if (PQntuples(r) > 0 && PQnfields(r) >= 2)
					snprintf(s->receipt, sizeof(s->receipt), "%s", PQgetvalue(r, 0, 1));
				if (s->keep)
				{
					if (s->res)
						PQclear(s->res);
					s->res = r;
					r = NULL;
				}
				break;
			case PGRES_COMMAND_OK:
				break;
			default:
				die("query failed (backend %d): %s", s->pid, PQresultErrorMessage(r));
		}
		if (r)
			PQclear(r);
	}
}

/*
 * Wait up to timeout_ms for input on the busy sessions of v and process it. Returns the time
 * poll() returned, which stamps every result that arrived with it.
 */
static struct pollfd *pfds;
static Sess **pfd_sess;
static int	pfd_max;

static double
pump(Sess **v, int n, double timeout_ms)
{
	int			nfd = 0,
				rc;
	double		t;

	if (n > pfd_max)
	{
		pfd_max = n * 2;
		pfds = realloc(pfds, sizeof(*pfds) * pfd_max);
		pfd_sess = realloc(pfd_sess, sizeof(*pfd_sess) * pfd_max);
	}
	for (int i = 0; i < n; i++)
		if (v[i]->busy)
		{
			pfds[nfd].fd = PQsocket(v[i]->pg);
			pfds[nfd].events = POLLIN;
			pfds[nfd].revents = 0;
			pfd_sess[nfd++] = v[i];
		}
	if (timeout_ms < 0)
		timeout_ms = 0;
	rc = poll(pfds, nfd, (int) (timeout_ms + 0.999));
	t = now_ms();
	if (rc < 0 && errno != EINTR)
		die("poll: %s", strerror(errno));
	for (int i = 0; rc > 0 && i < nfd; i++)
		if (pfds[i].revents)
			sess_input(pfd_sess[i], t);
	return t;
}

/* ---------------------------------------------------------------- statistics */

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return (x > y) - (x < y);
}

/* nearest-rank percentile of a sorted array */
static double
pct(const double *v, int n, double q)
{
	int			k;

	if (n == 0)
		return 0;
	k = (int) (q * n);
	if (k < q * n)
		k++;
	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return v[k - 1];
}

static const char *
verdict(int ok)
{
	return ok ? "met" : "MISSED";
}

/* ---------------------------------------------------------------- 1. latency */

static int
wait_until_waiting(Sess *mon, int pid, double timeout_ms)
{
	char		pidbuf[16];
	double		start = now_ms();

	snprintf(pidbuf, sizeof(pidbuf), "%d", pid);
	for (;;)
	{
		PGresult   *r = sess_exec(mon, "SELECT wait_event FROM pg_stat_activity WHERE pid = $1", pidbuf);
		int			waiting = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "Extension") == 0;

		PQclear(r);
		if (waiting)
			return 1;
		if (now_ms() - start > timeout_ms)
			return 0;
		sleep_ms(0.2);
	}
}

static void
test_latency(void)
{
	int			trials = env_int("LP_TRIALS", 500),
				warmup = 10,
				n = 0,
				missed = 0,
				negative = 0,
				late = 0;
	double	   *lat = malloc(sizeof(double) * (trials + 1)),
			   *lat_sent = malloc(sizeof(double) * (trials + 1)),
			   *commit_ms = malloc(sizeof(double) * (trials + 1)),
				t_start = now_ms();
	Sess		w,
				s;
	Sess	   *v[2] = {&w, &s};

	sess_open(&w, "lp_latency_waiter");
	sess_open(&s, "lp_latency_sender");
	for (int t = -warmup; t < trials; t++)
	{
		double		t_sent;
		PGresult   *r;

		sess_send(&w, RECV_WAIT_SQL("lp"));
		if (!wait_until_waiting(&s, w.pid, 5000))
			die("latency: the waiter (backend %d) did not start waiting within 5 s", w.pid);
		t_sent = now_ms();
		sess_send(&s, "BEGIN; SELECT courier.send('lp', 'x'::text); COMMIT");
		while (w.busy || s.busy)
		{
			pump(v, 2, 100);
			if (now_ms() - t_sent > 30000)
				die("latency: no result 30 s after the send");
		}
		if (t < 0)
		{
			if (w.nrows == 1)
				PQclear(sess_exec(&w, "SELECT courier.ack('lp', $1)", w.receipt));
			continue;
		}
		if (w.nrows != 1)
		{
			/* returned empty at the end of its wait: a missed wake-up */
			missed++;
			r = sess_exec(&w, "SELECT courier.ack('lp', receipt) FROM courier.receive('lp', 10)", NULL);
			PQclear(r);
			continue;
		}
		PQclear(sess_exec(&w, "SELECT courier.ack('lp', $1)", w.receipt));
		lat[n] = w.t_done - s.t_done;
		lat_sent[n] = w.t_done - t_sent;
		commit_ms[n] = s.t_done - t_sent;
		if (lat[n] < 0)
			negative++;
		if (lat[n] > 100)
			late++;
		n++;
	}
	sess_close(&w);
	sess_close(&s);

	qsort(lat, n, sizeof(double), cmp_double);
	qsort(lat_sent, n, sizeof(double), cmp_double);
	qsort(commit_ms, n, sizeof(double), cmp_double);
	printf("\n1. Wake-up latency: COMMIT of the send returned -> the waiter's row arrived\n");
	printf("   %d trials (+%d warm-up), 1 waiter, receive(wait => '20 seconds'), %.1f s\n\n",
		   trials, warmup, (now_ms() - t_start) / 1000);
	printf("   %-44s %8s %8s %8s %8s\n", "ms", "p50", "p90", "p99", "max");
	printf("   %-44s %8.3f %8.3f %8.3f %8.3f\n", "COMMIT returned -> row arrived  (the bar)",
		   pct(lat, n, .5), pct(lat, n, .9), pct(lat, n, .99), n ? lat[n - 1] : 0);
	printf("   %-44s %8.3f %8.3f %8.3f %8.3f\n", "COMMIT sent     -> row arrived",
		   pct(lat_sent, n, .5), pct(lat_sent, n, .9), pct(lat_sent, n, .99), n ? lat_sent[n - 1] : 0);
	printf("   %-44s %8.3f %8.3f %8.3f %8.3f\n", "the sender's BEGIN;send;COMMIT round trip",
		   pct(commit_ms, n, .5), pct(commit_ms, n, .9), pct(commit_ms, n, .99), n ? commit_ms[n - 1] : 0);
	printf("\n   target p50 < 2 ms: %s (%.3f ms);  target p99 < 20 ms: %s (%.3f ms)\n",
		   verdict(n > 0 && pct(lat, n, .5) < 2), pct(lat, n, .5),
		   verdict(n > 0 && pct(lat, n, .99) < 20), pct(lat, n, .99));
	printf("   missed wake-ups (receive returned empty): %d;  later than 100 ms: %d;  row before COMMIT's reply: %d\n",
		   missed, late, negative);
	if (negative)
		printf("   (negative: the waiter's row came before the sender had COMMIT's reply: waiters are woken\n"
			   "   inside the commit, once it is visible, before the reply is sent)\n");
	free(lat);
	free(lat_sent);
	free(commit_ms);
}

/* ---------------------------------------------------------------- 2. idle CPU */

/* A group of sessions running the same loop. */
typedef struct IdleRun
{
	const char *label;
	const char *appname;
	const char *waiting;		/* wait_event of a session of this group at rest, or NULL */
	const char *warm_sql;		/* run once per session before anything is measured */
	const char *first_fmt;		/* the first call, %g = seconds staggered over (0, 20], or NULL */
	const char *sql;			/* the call of the loop */
	const char *ack_sql;
	int			restart;		/* reissue at once when a call completes (else after poll_ms) */
	int			poll_ms;
	/* results */
	int			n;
	Sess	   *v;
	double		seconds;
	double		cpu_ticks_pct;	/* server backends, utime+stime, % of one core */
	double		cpu_sched_pct;	/* server backends, schedstat, % of one core */
	double		calls_per_s;
	double		us_per_call;	/* schedstat CPU per completed call */
	double		wakeups_per_s;	/* voluntary context switches of the backends per second */
	double		client_pct;		/* this program during the phase (all its groups) */
	long		msgs;
	int			ran;
} IdleRun;

static void
idle_done(Sess *s, void *ctx)
{
	IdleRun    *run = ctx;

	if (s->phase == 1)
		s->phase = 0;			/* ack done */
	else
	{
		s->n_calls++;
		if (s->nrows > 0 && run->ack_sql)
		{
			s->n_msgs += s->nrows;
			s->phase = 1;
			sess_send1(s, run->ack_sql, s->receipt);
			return;
		}
		s->n_empty++;
	}
	if (run->restart)
		sess_send(s, run->sql);
	else
		s->next_at = s->t_done + run->poll_ms;
}

typedef struct Snap
{
	double		t;
	long long	ticks;
	long long	sched_ns;
	long long	vcsw;
	long		calls;
} Snap;

static void
snap(IdleRun *run, Snap *sn)
{
	memset(sn, 0, sizeof(*sn));
	for (int i = 0; i < run->n; i++)
	{
		long long	ns = proc_sched_ns(run->v[i].pid);

		sn->ticks += proc_ticks(run->v[i].pid);
		sn->sched_ns += ns < 0 ? 0 : ns;
		sn->vcsw += proc_vcsw(run->v[i].pid);
		sn->calls += run->v[i].n_calls;
	}
	sn->t = now_ms();
}

/* issue due polls, then wait for results until the next poll is due or 'end' */
static void
idle_step(IdleRun *runs, int nruns, Sess **pv, int nv, double end)
{
	double		t = now_ms(),
				next = end;

	for (int g = 0; g < nruns; g++)
		for (int i = 0; !runs[g].restart && i < runs[g].n; i++)
		{
			Sess	   *s = &runs[g].v[i];

			if (s->busy)
				continue;
			if (s->next_at <= t)
				sess_send(s, runs[g].sql);
			else if (s->next_at < next)
				next = s->next_at;
		}
	pump(pv, nv, next - now_ms());
}

/* Run the groups side by side; measure each over the same LP_IDLE_SECONDS. */
static void
idle_phase(IdleRun *runs, int nruns, Sess *mon)
{
	int			n = env_int("LP_SESSIONS", 100),
				seconds = env_int("LP_IDLE_SECONDS", 60),
				nv = 0;
	long		hz = sysconf(_SC_CLK_TCK);
	Sess	  **pv = calloc(n * nruns, sizeof(Sess *));
	Snap	   *a = calloc(nruns, sizeof(Snap)),
			   *b = calloc(nruns, sizeof(Snap));
	double		end,
				t0,
				client0,
				client1;
	int			polling = 0;

	for (int g = 0; g < nruns; g++)
	{
		IdleRun    *run = &runs[g];

		run->n = n;
		run->v = calloc(n, sizeof(Sess));
		polling |= !run->restart;
		for (int i = 0; i < n; i++)
		{
			Sess	   *s = &run->v[i];

			sess_open(s, run->appname);
			s->done = idle_done;
			s->ctx = run;
			pv[nv++] = s;
			PQclear(sess_exec(s, run->warm_sql, NULL));
		}
	}
	/* start: waits staggered over one 20 s period, polls over one interval */
	for (int g = 0; g < nruns; g++)
		for (int i = 0; i < n; i++)
		{
			IdleRun    *run = &runs[g];
			Sess	   *s = &run->v[i];

			s->next_at = now_ms() + (double) run->poll_ms * i / n;
			if (run->first_fmt)
			{
				char		sql[256];

				snprintf(sql, sizeof(sql), run->first_fmt, 20.0 * (i + 1) / n);
				sess_send(s, sql);
			}
			else if (run->restart)
				sess_send(s, run->sql);
		}

	/* the waiting groups all at rest, and 2 s of polling for the polling ones */
	t0 = now_ms();
	for (int g = 0; g < nruns; g++)
	{
		char		sql[256];

		if (runs[g].waiting == NULL)
			continue;
		snprintf(sql, sizeof(sql),
				 "SELECT count(*) FROM pg_stat_activity WHERE application_name = '%s' AND wait_event = '%s'",
				 runs[g].appname, runs[g].waiting);
		for (;;)
		{
			PGresult   *r;
			int			k;

			idle_step(runs, nruns, pv, nv, now_ms() + 20);
			r = sess_exec(mon, sql, NULL);
			k = atoi(PQgetvalue(r, 0, 0));
			PQclear(r);
			if (k == n)
				break;
			if (now_ms() - t0 > 30000)
				die("idle: only %d of %d sessions of \"%s\" are waiting after 30 s", k, n, runs[g].label);
		}
	}
	end = t0 + (polling ? 2000 : 200);
	while (now_ms() < end)
		idle_step(runs, nruns, pv, nv, end);

	client0 = client_cpu_ms();
	for (int g = 0; g < nruns; g++)
		snap(&runs[g], &a[g]);
	end = now_ms() + seconds * 1000.0;
	while (now_ms() < end)
		idle_step(runs, nruns, pv, nv, end);
	for (int g = 0; g < nruns; g++)
		snap(&runs[g], &b[g]);
	client1 = client_cpu_ms();

	for (int g = 0; g < nruns; g++)
	{
		IdleRun    *run = &runs[g];
		long		calls = b[g].calls - a[g].calls;

		run->seconds = (b[g].t - a[g].t) / 1000;
		run->cpu_ticks_pct = 100.0 * (b[g].ticks - a[g].ticks) / hz / run->seconds;
		run->cpu_sched_pct = 100.0 * (b[g].sched_ns - a[g].sched_ns) / 1e9 / run->seconds;
		run->calls_per_s = calls / run->seconds;
		run->us_per_call = calls ? (b[g].sched_ns - a[g].sched_ns) / 1e3 / calls : 0;
		run->wakeups_per_s = (b[g].vcsw - a[g].vcsw) / run->seconds;
		run->client_pct = 100.0 * (client1 - client0) / 1000 / run->seconds;
		run->msgs = 0;
		for (int i = 0; i < n; i++)
			run->msgs += run->v[i].n_msgs;
		run->ran = 1;
		for (int i = 0; i < n; i++)
			sess_close(&run->v[i]);
		free(run->v);
		run->v = NULL;
	}
	free(pv);
	free(a);
	free(b);

	/* let the closed sessions' backends exit before the next phase */
	for (int k = 0; k < 100; k++)
	{
		PGresult   *q = sess_exec(mon, "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'lp\\_idle\\_%'", NULL);
		int			left = atoi(PQgetvalue(q, 0, 0));

		PQclear(q);
		if (left == 0)
			break;
		sleep_ms(100);
	}
}

static void
test_idle(void)
{
	IdleRun		r[4] = {
		{.label = "long poll: receive(wait => '20 seconds') in a loop",
			.appname = "lp_idle_wait", .waiting = "Extension",
			.warm_sql = "SELECT * FROM courier.receive('idle', 1)",
			.first_fmt = "SELECT msg_id, receipt FROM courier.receive('idle', 1, wait => make_interval(secs => %g))",
			.sql = RECV_WAIT_SQL("idle"), .ack_sql = "SELECT courier.ack('idle', $1)", .restart = 1},
		{.label = "  baseline alongside: pg_sleep(20) in a loop",
			.appname = "lp_idle_sleep", .waiting = "PgSleep",
			.warm_sql = "SELECT pg_sleep(0)",
			.first_fmt = "SELECT pg_sleep(%g)",
			.sql = "SELECT pg_sleep(20)", .restart = 1},
		{.label = "client poll: receive(), sleep 100 ms, repeat",
			.appname = "lp_idle_poll",
			.warm_sql = "SELECT * FROM courier.receive('idle2', 1)",
			.sql = "SELECT * FROM courier.receive('idle2', 1)", .ack_sql = "SELECT courier.ack('idle2', $1)"},
		{.label = "server poll: pgmq-style plpgsql loop, 100 ms",
			.appname = "lp_idle_srvpoll",
			.warm_sql = "SELECT * FROM courier.receive('idle3', 1)",
			.sql = "SELECT * FROM lp_read_with_poll('idle3', 5, 100)", .ack_sql = "SELECT courier.ack('idle3', $1)",
		.restart = 1},
	};
	Sess		mon;
	int			nruns = env_int("LP_SERVER_POLL", 0) ? 4 : 3,
				poll_ms = env_int("LP_POLL_MS", 100);
	double		worst;

	for (int g = 0; g < 4; g++)
		r[g].poll_ms = poll_ms;
	sess_open(&mon, "lp_monitor");
	idle_phase(&r[0], 2, &mon);		/* long poll and its baseline, side by side */
	idle_phase(&r[2], 1, &mon);
	if (nruns == 4)
		idle_phase(&r[3], 1, &mon);
	sess_close(&mon);

	printf("\n2. Idle CPU: %d sessions per line on empty queues, %.0f s per run\n\n", r[0].n, r[0].seconds);
	printf("   %-50s %10s %11s %9s %8s %9s %10s\n", "", "server CPU", "(schedstat)", "us/call", "calls/s",
		   "wakeups/s", "client CPU");
	for (int g = 0; g < nruns; g++)
		printf("   %-50s %9.3f%% %10.3f%% %9.0f %8.1f %9.1f %9.3f%%\n", r[g].label,
			   r[g].cpu_ticks_pct, r[g].cpu_sched_pct, r[g].us_per_call, r[g].calls_per_s,
			   r[g].wakeups_per_s, r[g].client_pct);
	printf("\n   CPU in %% of one core, summed over the %d backends of the line (utime+stime from\n"
		   "   /proc/<pid>/stat; schedstat: time on CPU from /proc/<pid>/schedstat); us/call: schedstat CPU\n"
		   "   per completed call; wakeups/s: voluntary context switches of those backends; client CPU: this\n"
		   "   program during the run (the first two lines share one run). The waits start staggered over\n"
		   "   20 s, like workers that did not all start at once. The pg_sleep(20) line does what the long\n"
		   "   poll does without pg_courier (one statement and one sleep per 20 s): the cost of waking a\n"
		   "   backend every 20 s on this machine.\n", r[0].n);
	worst = r[0].cpu_ticks_pct > r[0].cpu_sched_pct ? r[0].cpu_ticks_pct : r[0].cpu_sched_pct;
	printf("   target: long poll < 1%% of one core in total: %s (%.3f%%; %.3f%% above the pg_sleep baseline)\n",
		   verdict(worst < 1), worst, r[0].cpu_sched_pct - r[1].cpu_sched_pct);
	for (int g = 0; g < nruns; g++)
		if (r[g].msgs)
			printf("   WARNING: %s received %ld messages from a queue nobody sent to\n", r[g].label, r[g].msgs);
}

/* ---------------------------------------------------------------- 3. herd */

typedef struct HerdCtx
{
	const char *sql;
	double	   *ack_ms;			/* how long each ack of a received message took */
	int			nacks;
	int			maxacks;
} HerdCtx;

static void
herd_done(Sess *s, void *ctx)
{
	HerdCtx    *h = ctx;

	if (s->phase == 1)
	{
		if (h->nacks < h->maxacks)
			h->ack_ms[h->nacks++] = s->t_done - s->t_issued;
		s->phase = 0;
		sess_send(s, h->sql);
		return;
	}
	s->n_calls++;
	if (s->nrows > 0)
	{
		s->n_msgs += s->nrows;
		s->phase = 1;
		sess_send1(s, "SELECT courier.ack('herd', $1)", s->receipt);
		return;
	}
	s->n_empty++;
	sess_send(s, h->sql);
}

typedef struct Sample
{
	double		t;
	long long  *vcsw;
	char	   *ext;
} Sample;

/* fill ext[] (1 = wait_event 'Extension') from a monitor result of (pid, bool) rows */
static void
monitor_ext(PGresult *r, Sess *w, int nw, char *ext)
{
	memset(ext, 0, nw);
	for (int k = 0; r && k < PQntuples(r); k++)
	{
		int			pid = atoi(PQgetvalue(r, k, 0));

		for (int i = 0; i < nw; i++)
			if (w[i].pid == pid)
			{
				ext[i] = PQgetvalue(r, k, 1)[0] == 't';
				break;
			}
	}
}

#define HERD_MON_SQL "SELECT pid, wait_event IS NOT DISTINCT FROM 'Extension' FROM pg_stat_activity WHERE application_name = 'lp_herd_waiter'"
#define HERD_WHO_SQL \
	"SELECT string_agg(format('backend %s (%s) %s on %s/%s for %s, blocked by %s', a.pid, " \
	"         CASE WHEN a.query LIKE '%courier.ack%' THEN 'ack of the message' ELSE 'waiting receive' END, " \
	"         a.state, a.wait_event_type, a.wait_event, date_trunc('milliseconds', now() - a.query_start), " \
	"         (SELECT coalesce(string_agg(format('backend %s (%s, wait_event %s)', b.pid, " \
	"                  CASE WHEN b.query LIKE '%courier.ack%' THEN 'ack' ELSE 'waiting receive' END, b.wait_event), ', '), 'nobody') " \
	"            FROM pg_stat_activity b WHERE b.pid = ANY (pg_blocking_pids(a.pid)))), E'\\n') " \
	"  FROM pg_stat_activity a WHERE a.application_name = 'lp_herd_waiter' " \
	"   AND a.wait_event IS DISTINCT FROM 'Extension' AND a.state = 'active'"
#define HERD_STABLE_MS 200
#define HERD_MAX_MS 3000

static void
test_herd(void)
{
	int			nw = env_int("LP_HERD_WAITERS", 100),
				rounds = env_int("LP_HERD_ROUNDS", 20),
				budget_s = env_int("LP_HERD_MAX_SECONDS", 45),
				valid = 0,
				settled = 0,
				discarded = 0,
				unsettled = 0,
				out_of_time = 0,
				nsess = nw + 2;
	HerdCtx		h;
	Sess	   *w = calloc(nw, sizeof(Sess)),
				snd,
				mon;
	Sess	  **all = calloc(nsess, sizeof(Sess *));
	long long  *vcsw0 = calloc(nw, sizeof(long long)),
			   *sched0 = calloc(nw, sizeof(long long)),
			   *pending_vcsw = calloc(nw, sizeof(long long));
	long	   *msgs0 = calloc(nw, sizeof(long)),
			   *empty0 = calloc(nw, sizeof(long));
	char	   *ext = calloc(nw, 1),
			   *is_winner = calloc(nw, 1),
			   *stuck = NULL;
	int			maxsamp = 20000,
				nsamp;
	Sample	   *samp = calloc(maxsamp, sizeof(Sample));
	double		sum_woke = 0,
				sum_woke_others = 0,
				sum_got = 0,
				sum_settle_o = 0,
				max_settle_o = 0,
				sum_settle_a = 0,
				max_settle_a = 0,
				sum_cpu_us = 0,
				sum_csw_o = 0,
				sum_interval = 0,
				min_woke = 1e9,
				t_start = now_ms(),
				t_budget = t_start + budget_s * 1000.0;
	int			max_got = 0,
				min_got = 1 << 30;

	memset(&h, 0, sizeof(h));
	h.sql = RECV_WAIT_SQL("herd");
	h.maxacks = rounds * 4 + 16;
	h.ack_ms = calloc(h.maxacks, sizeof(double));
	for (int k = 0; k < maxsamp; k++)
	{
		samp[k].vcsw = calloc(nw, sizeof(long long));
		samp[k].ext = calloc(nw, 1);
	}
	for (int i = 0; i < nw; i++)
	{
		sess_open(&w[i], "lp_herd_waiter");
		w[i].done = herd_done;
		w[i].ctx = &h;
		all[i] = &w[i];
	}
	sess_open(&snd, "lp_herd_sender");
	sess_open(&mon, "lp_herd_monitor");
	mon.keep = 1;
	all[nw] = &snd;
	all[nw + 1] = &mon;
	for (int i = 0; i < nw; i++)
		sess_send(&w[i], h.sql);

	while (valid < rounds && !out_of_time)
	{
		double		t_stable_since = 0,
					t_commit;
		int			ready = 0,
					got = 0,
					empties = 0,
					woke = 0,
					woke_o = 0,
					nothers = 0,
					round_settled = 0,
					kset;
		long long	cpu_ns = 0,
					csw_o = 0;

		/* all nw waiting, twice in a row */
		while (ready < 2)
		{
			pump(all, nsess, 2);
			if (!mon.busy)
			{
				if (mon.res)
				{
					int			k = 0;

					monitor_ext(mon.res, w, nw, ext);
					for (int i = 0; i < nw; i++)
						k += ext[i] && w[i].busy && w[i].phase == 0;
					ready = (k == nw) ? ready + 1 : 0;
					PQclear(mon.res);
					mon.res = NULL;
				}
				if (ready < 2)
					sess_send(&mon, HERD_MON_SQL);
			}
			if (now_ms() > t_budget)
			{
				out_of_time = 1;
				break;
			}
		}
		if (out_of_time)
			break;
		while (mon.busy)
			pump(&all[nw + 1], 1, 100);
		if (mon.res)
		{
			PQclear(mon.res);
			mon.res = NULL;
		}
		sleep_ms(20);

		for (int i = 0; i < nw; i++)
		{
			vcsw0[i] = proc_vcsw(w[i].pid);
			sched0[i] = proc_sched_ns(w[i].pid);
			msgs0[i] = w[i].n_msgs;
			empty0[i] = w[i].n_empty;
		}

		/* one message; then sample until nothing has changed for HERD_STABLE_MS */
		sess_send(&snd, "BEGIN; SELECT courier.send('herd', 'x'::text); COMMIT");
		nsamp = 0;
		for (;;)
		{
			double		t = pump(all, nsess, 1);
			int			winner_back = 0,
						delivered = 0;

			if (!mon.busy)
			{
				if (mon.res && nsamp < maxsamp)
				{
					Sample	   *sm = &samp[nsamp];
					int			changed = (nsamp == 0);

					sm->t = mon.t_done;
					memcpy(sm->vcsw, pending_vcsw, sizeof(long long) * nw);
					monitor_ext(mon.res, w, nw, sm->ext);
					if (nsamp > 0)
						changed = memcmp(sm->ext, samp[nsamp - 1].ext, nw) != 0 ||
							memcmp(sm->vcsw, samp[nsamp - 1].vcsw, sizeof(long long) * nw) != 0;
					for (int i = 0; i < nw && !changed; i++)
						changed = !sm->ext[i];
					if (changed)
						t_stable_since = sm->t;
					nsamp++;
				}
				if (mon.res)
				{
					PQclear(mon.res);
					mon.res = NULL;
				}
				for (int i = 0; i < nw; i++)
					pending_vcsw[i] = proc_vcsw(w[i].pid);
				sess_send(&mon, HERD_MON_SQL);
			}
			for (int i = 0; i < nw; i++)
				if (w[i].n_msgs > msgs0[i])
				{
					delivered = 1;
					winner_back = w[i].busy && w[i].phase == 0;
				}
			if (!snd.busy && delivered && winner_back && nsamp > 0 &&
				t - t_stable_since >= HERD_STABLE_MS)
			{
				round_settled = 1;
				break;
			}
			if (t - snd.t_issued > HERD_MAX_MS || nsamp >= maxsamp)
				break;
		}
		while (mon.busy)
			pump(&all[nw + 1], 1, 100);
		if (mon.res)
		{
			PQclear(mon.res);
			mon.res = NULL;
		}
		if (!round_settled && stuck == NULL)
		{
			/* say who is stuck on what, once */
			PGresult   *q = sess_exec(&mon, HERD_WHO_SQL, NULL);

			if (PQntuples(q) == 1 && !PQgetisnull(q, 0, 0))
				stuck = strdup(PQgetvalue(q, 0, 0));
			PQclear(q);
		}
		while (snd.busy)
			pump(all, nsess, 100);
		t_commit = snd.t_done;
		if (nsamp == 0)
			die("herd: no sample taken");

		for (int i = 0; i < nw; i++)
		{
			got += w[i].n_msgs - msgs0[i];
			empties += w[i].n_empty - empty0[i];
		}
		if (empties > 0)
		{
			/* a 20 s wait ended during the round: its re-issue would count as a wake-up */
			discarded++;
			continue;
		}
		valid++;

		/* woke = blocked again since the send */
		for (int i = 0; i < nw; i++)
		{
			long long	v = samp[nsamp - 1].vcsw[i];
			long long	ns = proc_sched_ns(w[i].pid);

			is_winner[i] = w[i].n_msgs > msgs0[i];
			woke += v > vcsw0[i];
			cpu_ns += ns - sched0[i];
			if (!is_winner[i])
			{
				nothers++;
				woke_o += v > vcsw0[i];
				csw_o += v - vcsw0[i];
			}
		}
		sum_woke += woke;
		sum_woke_others += woke_o;
		if (woke < min_woke)
			min_woke = woke;
		sum_got += got;
		if (got > max_got)
			max_got = got;
		if (got < min_got)
			min_got = got;
		sum_cpu_us += cpu_ns / 1000.0;
		sum_csw_o += nothers ? (double) csw_o / nothers : 0;
		if (nsamp > 1)
			sum_interval += (samp[nsamp - 1].t - samp[0].t) / (nsamp - 1);
		if (!round_settled)
		{
			unsettled++;
			continue;
		}
		settled++;

		/* settle = the first sample from which every (other) waiter stays in its final state */
		for (int pass = 0; pass < 2; pass++)
		{
			double		settle;

			kset = nsamp - 1;
			while (kset > 0)
			{
				int			same = 1;

				for (int i = 0; i < nw && same; i++)
				{
					if (pass == 0 && is_winner[i])
						continue;
					same = samp[kset - 1].ext[i] &&
						samp[kset - 1].vcsw[i] == samp[nsamp - 1].vcsw[i];
				}
				if (!same)
					break;
				kset--;
			}
			settle = samp[kset].t - t_commit;
			if (pass == 0)
			{
				sum_settle_o += settle;
				if (settle > max_settle_o)
					max_settle_o = settle;
			}
			else
			{
				sum_settle_a += settle;
				if (settle > max_settle_a)
					max_settle_a = settle;
			}
		}
	}
	for (int i = 0; i < nw; i++)
		sess_close(&w[i]);
	sess_close(&snd);
	sess_close(&mon);

	qsort(h.ack_ms, h.nacks, sizeof(double), cmp_double);
	printf("\n3. Thundering herd: %d waiters on one queue, 1 message sent and committed per round;\n"
		   "   %d rounds measured (%d asked), %.1f s\n\n",
		   nw, valid, rounds, (now_ms() - t_start) / 1000);
	if (valid == 0)
	{
		printf("   no round could be measured\n");
		return;
	}
	printf("   %-64s %9s %9s\n", "per round", "mean", "worst");
	printf("   %-64s %9.1f %9.0f\n", "waiters woken (blocked again after the send)", sum_woke / valid, min_woke);
	printf("   %-64s %9.2f %9d\n", "waiters that got the message (must be 1)", sum_got / valid,
		   (max_got != 1) ? max_got : min_got);
	if (settled)
	{
		printf("   %-64s %9.1f %9.1f\n", "ms from COMMIT returned until the others wait again",
			   sum_settle_o / settled, max_settle_o);
		printf("   %-64s %9.1f %9.1f\n", "ms until all wait again, the winner too (ack + new receive)",
			   sum_settle_a / settled, max_settle_a);
	}
	printf("   %-64s %9d\n", "rounds not settled within 3 s (left out of the two lines above)",
		   unsettled);
	printf("   %-64s %9.2f %9s\n", "sleeps per non-winning waiter (1 = woke once, slept again)",
		   sum_csw_o / valid, "");
	printf("   %-64s %9.0f %9s\n", "server CPU of all waiters, microseconds (schedstat)", sum_cpu_us / valid, "");
	if (h.nacks > 0)
		printf("   %-64s %9.1f %9.1f\n", "ms the winner's ack took (p50, max)",
			   pct(h.ack_ms, h.nacks, .5), h.ack_ms[h.nacks - 1]);
	printf("\n   woken = voluntary context switches of the backend since the send (/proc/<pid>/status);\n"
		   "   waiting again = pg_stat_activity.wait_event 'Extension' and no more context switches;\n"
		   "   sampled every %.1f ms on average (times are upper bounds within that step); a round ends\n"
		   "   once nothing changed for %d ms.\n", sum_interval / valid, HERD_STABLE_MS);
	printf("   mean woken others: %.1f of %d.  exactly one receiver in every round: %s.\n",
		   sum_woke_others / valid, nw - 1, verdict(max_got == 1 && min_got == 1));
	if (discarded)
		printf("   %d round(s) discarded: a waiter's 20 s wait ended during it (its re-issue looks like a wake-up).\n",
			   discarded);
	if (out_of_time)
		printf("   stopped after LP_HERD_MAX_SECONDS=%d.\n", budget_s);
	if (stuck)
	{
		printf("   WARNING: in an unsettled round, still not waiting after 3 s:\n   ");
		for (const char *c = stuck; *c; c++)
		{
			putchar(*c);
			if (*c == '\n')
				printf("   ");
		}
		putchar('\n');
	}
}

int
main(void)
{
	PGconn	   *c;
	PGresult   *r;

	setvbuf(stdout, NULL, _IOLBF, 0);
	c = PQconnectdb("application_name=lp_info");
	if (PQstatus(c) != CONNECTION_OK)
		die("connection failed: %s", PQerrorMessage(c));
	PQclear(PQexec(c, "LOAD 'pg_courier'"));
	r = PQexec(c, "SELECT current_setting('server_version'), "
			   "(SELECT extversion FROM pg_extension WHERE extname = 'pg_courier'), "
			   "current_setting('courier.max_wait', true), current_setting('max_connections')");
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		die("%s", PQresultErrorMessage(r));
	printf("pg_courier long-polling benchmark: PostgreSQL %s, pg_courier %s, courier.max_wait %s, "
		   "%ld CPUs, max_connections %s\n",
		   PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2),
		   sysconf(_SC_NPROCESSORS_ONLN), PQgetvalue(r, 0, 3));
	PQclear(r);
	PQfinish(c);

	if (!skipped("latency"))
		test_latency();
	if (!skipped("idle"))
		test_idle();
	if (!skipped("herd"))
		test_herd();
	return 0;
}
