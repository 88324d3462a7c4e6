/*-------------------------------------------------------------------------
 *
 * filter.c
 *	  Subscription filter policies with the semantics of Amazon SNS.
 *
 * A policy is a JSON object.  Each key names a message attribute (with
 * filter_scope 'body': a property of the JSON body, where nested objects
 * name nested properties) and maps to an array of conditions, any one of
 * which must match (OR); all keys must match (AND).  "$or" maps to an array
 * of at least two policies, one of which must match.  A condition is a
 * string, number, boolean or null (equality), or an object with exactly one
 * operator: prefix, suffix, equals-ignore-case, anything-but (a value, a
 * list of values, or {"prefix"} / {"suffix"}), numeric (one comparison or
 * a range) or exists.
 *
 * Compiled form.  Nested keys are flattened into leaves, each holding the
 * full path of keys and its conditions.  An AND node holds leaves and OR
 * nodes; an OR node holds the AND nodes of its "$or" branches.  Matching
 * walks each leaf's path through the message; arrays met on the way are
 * looked through, so a value matches when any element of an array does
 * (SNS's rule for bodies).  Policy numbers are kept as doubles, and message
 * numbers are converted once per leaf and value.
 *
 * No locking: a compiled filter is backend-local and read-only once built.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "filter.h"

/* SNS: numbers in a policy lie within +-10^9 */
#define FILTER_MAX_NUMBER		1e9
/* how deeply body keys may nest */
#define FILTER_MAX_DEPTH		32

typedef enum FilterOp
{
	FOP_EQUALS,					/* value: a string, number, boolean or null */
	FOP_PREFIX,
	FOP_SUFFIX,
	FOP_IGNORE_CASE,			/* value: lower-cased */
	FOP_ANYTHING_BUT,			/* values */
	FOP_ANYTHING_BUT_PREFIX,
	FOP_ANYTHING_BUT_SUFFIX,
	FOP_NUMERIC,
	FOP_EXISTS
} FilterOp;

/* A scalar of a policy. */
typedef struct FilterValue
{
	enum jbvType type;			/* jbvString, jbvNumeric, jbvBool or jbvNull */
	char	   *str;			/* jbvString, not NUL-terminated */
	int			len;
	double		num;			/* jbvNumeric */
	bool		boolean;		/* jbvBool */
} FilterValue;

typedef struct FilterCond
{
	FilterOp	op;
	FilterValue value;			/* EQUALS; the string of the string operators */
	int			nvalues;		/* ANYTHING_BUT */
	FilterValue *values;
	bool		has_low;		/* NUMERIC */
	bool		low_inclusive;
	double		low;
	bool		has_high;
	bool		high_inclusive;
	double		high;
	bool		exists;			/* EXISTS */
} FilterCond;

typedef struct FilterKey
{
	char	   *key;
	int			len;
} FilterKey;

typedef struct FilterLeaf
{
	int			depth;			/* number of keys in path */
	FilterKey  *path;
	int			nconds;
	FilterCond *conds;
	bool		numeric;		/* a condition compares numbers */
} FilterLeaf;

typedef struct FilterOr FilterOr;

typedef struct FilterAnd
{
	int			nleaves;
	FilterLeaf *leaves;
	int			nors;
	FilterOr   *ors;
} FilterAnd;

struct FilterOr
{
	int			nbranches;
	FilterAnd  *branches;
};

struct CourierFilter
{
	bool		body_scope;
	FilterAnd	root;
};

typedef struct CompileState
{
	bool		body_scope;
	StringInfoData where;		/* path of the part being compiled, for errors */
	int			depth;			/* keys of the current object's path */
	FilterKey	path[FILTER_MAX_DEPTH];
} CompileState;

/* Refuses the policy, naming where in it the problem is. */
#define policy_error(st, ...) \
	ereport(ERROR, \
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE), \
			 errmsg("invalid filter policy at %s: %s", (st)->where.data, psprintf(__VA_ARGS__))))

static void compile_object(CompileState *st, JsonbContainer *obj, FilterAnd *and);

/*
 * Appends ".key" (quoted unless plain, cut to 64 bytes) to the error path;
 * returns the old length.
 */
static int
where_push_key(CompileState *st, const char *key, int len)
{
	int			old = st->where.len;
	bool		plain = len > 0;

	for (int i = 0; i < len && plain; i++)
		plain = isalnum((unsigned char) key[i]) || key[i] == '_' || key[i] == '-' || key[i] == '$';
	if (plain)
		appendStringInfo(&st->where, ".%.*s", Min(len, 64), key);
	else
		appendStringInfo(&st->where, ".\"%.*s\"", Min(len, 64), key);
	return old;
}

static int
where_push_index(CompileState *st, int i)
{
	int			old = st->where.len;

	appendStringInfo(&st->where, "[%d]", i);
	return old;
}

static void
where_pop(CompileState *st, int old)
{
	st->where.len = old;
	st->where.data[old] = '\0';
}

static bool
key_is(const JsonbValue *k, const char *name)
{
	return k->val.string.len == (int) strlen(name) &&
		memcmp(k->val.string.val, name, k->val.string.len) == 0;
}

static double
numeric_to_double(Numeric n)
{
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow, NumericGetDatum(n)));
}

/* A policy number: within SNS's range. */
static double
policy_number(CompileState *st, const JsonbValue *v)
{
	double		d = numeric_to_double(v->val.numeric);

	if (!(d >= -FILTER_MAX_NUMBER && d <= FILTER_MAX_NUMBER))
		policy_error(st, "numbers must lie between -1000000000 and 1000000000");
	return d;
}

/* Copies a scalar of the policy into fv. */
static void
set_value(CompileState *st, FilterValue *fv, const JsonbValue *v)
{
	fv->type = v->type;
	switch (v->type)
	{
		case jbvString:
			fv->str = pnstrdup(v->val.string.val, v->val.string.len);
			fv->len = v->val.string.len;
			break;
		case jbvNumeric:
			fv->num = policy_number(st, v);
			break;
		case jbvBool:
			fv->boolean = v->val.boolean;
			break;
		default:
			break;
	}
}

/* The only key and value of an operator object; refuses other shapes. */
static void
single_pair(CompileState *st, JsonbContainer *obj, JsonbValue *key, JsonbValue *value,
			const char *what)
{
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	v;

	memset(key, 0, sizeof(JsonbValue));
	memset(value, 0, sizeof(JsonbValue));
	if (JsonContainerSize(obj) != 1)
		policy_error(st, "%s must have exactly one key, not %d", what, (int) JsonContainerSize(obj));
	it = JsonbIteratorInit(obj);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			*key = v;
		else if (tok == WJB_VALUE)
			*value = v;
	}
}

static const char *
string_operator_arg(CompileState *st, const JsonbValue *v, const char *op)
{
	if (v->type != jbvString)
		policy_error(st, "\"%s\" takes a string", op);
	return v->val.string.val;
}

/* "numeric": ["op", n] or [">"|">=", n, "<"|"<=", m] */
static void
compile_numeric(CompileState *st, const JsonbValue *arg, FilterCond *cond)
{
	JsonbContainer *arr;
	int			n;
	const char *ops[2] = {NULL, NULL};
	double		nums[2] = {0, 0};

	if (arg->type != jbvBinary || !JsonContainerIsArray(arg->val.binary.data) ||
		((n = JsonContainerSize(arg->val.binary.data)) != 2 && n != 4))
		policy_error(st, "\"numeric\" takes an array of an operator and a number, or of two of each");
	arr = arg->val.binary.data;
	cond->op = FOP_NUMERIC;
	for (int i = 0; i < n; i++)
	{
		JsonbValue *e = getIthJsonbValueFromContainer(arr, i);
		int			old = where_push_index(st, i);

		if (i % 2 == 0)
		{
			static const char *const known[] = {"=", "<", "<=", ">", ">="};
			bool		ok = false;

			if (e->type == jbvString)
				for (int k = 0; k < lengthof(known) && !ok; k++)
					if (e->val.string.len == (int) strlen(known[k]) &&
						memcmp(e->val.string.val, known[k], e->val.string.len) == 0)
						ops[i / 2] = known[k], ok = true;
			if (!ok)
				policy_error(st, "a numeric operator is one of \"=\", \"<\", \"<=\", \">\", \">=\"");
		}
		else
		{
			if (e->type != jbvNumeric)
				policy_error(st, "a numeric operator must be followed by a number");
			nums[i / 2] = policy_number(st, e);
		}
		where_pop(st, old);
	}
	if (n == 2)
	{
		const char *op = ops[0];

		cond->has_low = (op[0] == '>' || op[0] == '=');
		cond->has_high = (op[0] == '<' || op[0] == '=');
		cond->low_inclusive = cond->high_inclusive = (op[0] == '=' || op[1] == '=');
		cond->low = cond->high = nums[0];
		return;
	}
	if (ops[0][0] != '>')
		policy_error(st, "a numeric range starts with \">\" or \">=\"");
	if (ops[1][0] != '<')
		policy_error(st, "a numeric range ends with \"<\" or \"<=\"");
	if (!(nums[0] < nums[1]))
		policy_error(st, "the lower bound of a numeric range must be below its upper bound");
	cond->has_low = cond->has_high = true;
	cond->low_inclusive = (ops[0][1] == '=');
	cond->high_inclusive = (ops[1][1] == '=');
	cond->low = nums[0];
	cond->high = nums[1];
}

/* "anything-but": a string or number, an array of them, or {"prefix"|"suffix": s} */
static void
compile_anything_but(CompileState *st, const JsonbValue *arg, FilterCond *cond, FilterLeaf *leaf)
{
	const char *usage = "\"anything-but\" takes a string, a number, an array of strings and numbers, "
		"or an object with \"prefix\" or \"suffix\"";

	cond->op = FOP_ANYTHING_BUT;
	if (arg->type == jbvString || arg->type == jbvNumeric)
	{
		cond->nvalues = 1;
		cond->values = palloc0(sizeof(FilterValue));
		set_value(st, &cond->values[0], arg);
	}
	else if (arg->type == jbvBinary && JsonContainerIsArray(arg->val.binary.data))
	{
		JsonbContainer *arr = arg->val.binary.data;

		cond->nvalues = JsonContainerSize(arr);
		if (cond->nvalues == 0)
			policy_error(st, "%s, not an empty array", usage);
		cond->values = palloc0(sizeof(FilterValue) * cond->nvalues);
		for (int i = 0; i < cond->nvalues; i++)
		{
			JsonbValue *e = getIthJsonbValueFromContainer(arr, i);
			int			old = where_push_index(st, i);

			if (e->type != jbvString && e->type != jbvNumeric)
				policy_error(st, "%s", usage);
			set_value(st, &cond->values[i], e);
			where_pop(st, old);
		}
	}
	else if (arg->type == jbvBinary && JsonContainerIsObject(arg->val.binary.data))
	{
		JsonbValue	key,
					value;
		int			old;

		single_pair(st, arg->val.binary.data, &key, &value, "an \"anything-but\" object");
		old = where_push_key(st, key.val.string.val, key.val.string.len);
		if (key_is(&key, "prefix"))
			cond->op = FOP_ANYTHING_BUT_PREFIX;
		else if (key_is(&key, "suffix"))
			cond->op = FOP_ANYTHING_BUT_SUFFIX;
		else
			policy_error(st, "%s", usage);
		string_operator_arg(st, &value, cond->op == FOP_ANYTHING_BUT_PREFIX ? "prefix" : "suffix");
		set_value(st, &cond->value, &value);
		where_pop(st, old);
		return;
	}
	else
		policy_error(st, "%s", usage);
	for (int i = 0; i < cond->nvalues; i++)
		if (cond->values[i].type == jbvNumeric)
			leaf->numeric = true;
}

/* One condition given as an object: {"operator": argument}. */
static void
compile_operator(CompileState *st, JsonbContainer *obj, FilterCond *cond, FilterLeaf *leaf)
{
	JsonbValue	key,
				arg;
	int			old;

	single_pair(st, obj, &key, &arg, "an operator object");
	old = where_push_key(st, key.val.string.val, key.val.string.len);
	if (key_is(&key, "prefix") || key_is(&key, "suffix"))
	{
		cond->op = key_is(&key, "prefix") ? FOP_PREFIX : FOP_SUFFIX;
		string_operator_arg(st, &arg, cond->op == FOP_PREFIX ? "prefix" : "suffix");
		set_value(st, &cond->value, &arg);
	}
	else if (key_is(&key, "equals-ignore-case"))
	{
		string_operator_arg(st, &arg, "equals-ignore-case");
		cond->op = FOP_IGNORE_CASE;
		cond->value.type = jbvString;
		cond->value.str = str_tolower(arg.val.string.val, arg.val.string.len,
									  DEFAULT_COLLATION_OID);
		cond->value.len = strlen(cond->value.str);
	}
	else if (key_is(&key, "anything-but"))
		compile_anything_but(st, &arg, cond, leaf);
	else if (key_is(&key, "numeric"))
	{
		compile_numeric(st, &arg, cond);
		leaf->numeric = true;
	}
	else if (key_is(&key, "exists"))
	{
		if (arg.type != jbvBool)
			policy_error(st, "\"exists\" takes true or false");
		cond->op = FOP_EXISTS;
		cond->exists = arg.val.boolean;
	}
	else
		policy_error(st, "unknown operator \"%.*s\"; the operators are prefix, suffix, "
					 "equals-ignore-case, anything-but, numeric and exists",
					 Min(key.val.string.len, 64), key.val.string.val);
	where_pop(st, old);
}

/* The array of conditions of one key: a new leaf of and. */
static void
compile_leaf(CompileState *st, JsonbContainer *arr, FilterAnd *and)
{
	FilterLeaf *leaf;
	int			n = JsonContainerSize(arr);

	if (n == 0)
		policy_error(st, "a key needs at least one condition, not an empty array");
	if (and->nleaves == 0)
		and->leaves = palloc0(sizeof(FilterLeaf));
	else
		and->leaves = repalloc(and->leaves, sizeof(FilterLeaf) * (and->nleaves + 1));
	leaf = &and->leaves[and->nleaves++];
	memset(leaf, 0, sizeof(FilterLeaf));
	leaf->depth = st->depth;
	leaf->path = palloc(sizeof(FilterKey) * st->depth);
	for (int i = 0; i < st->depth; i++)
	{
		leaf->path[i].key = pnstrdup(st->path[i].key, st->path[i].len);
		leaf->path[i].len = st->path[i].len;
	}
	leaf->nconds = n;
	leaf->conds = palloc0(sizeof(FilterCond) * n);
	for (int i = 0; i < n; i++)
	{
		JsonbValue *e = getIthJsonbValueFromContainer(arr, i);
		FilterCond *cond = &leaf->conds[i];
		int			old = where_push_index(st, i);

		if (e->type == jbvBinary && JsonContainerIsObject(e->val.binary.data))
			compile_operator(st, e->val.binary.data, cond, leaf);
		else if (e->type == jbvBinary)
			policy_error(st, "a condition is a value or an object with one operator, not an array");
		else
		{
			cond->op = FOP_EQUALS;
			set_value(st, &cond->value, e);
			if (e->type == jbvNumeric)
				leaf->numeric = true;
		}
		where_pop(st, old);
	}
}

/* "$or": [policy, policy, ...]: a new OR node of and. */
static void
compile_or(CompileState *st, const JsonbValue *arg, FilterAnd *and)
{
	FilterOr   *or;
	JsonbContainer *arr;
	int			n;

	if (arg->type != jbvBinary || !JsonContainerIsArray(arg->val.binary.data) ||
		(n = JsonContainerSize(arg->val.binary.data)) < 2)
		policy_error(st, "\"$or\" takes an array of at least two policies");
	arr = arg->val.binary.data;
	if (and->nors == 0)
		and->ors = palloc0(sizeof(FilterOr));
	else
		and->ors = repalloc(and->ors, sizeof(FilterOr) * (and->nors + 1));
	or = &and->ors[and->nors++];
	or->nbranches = n;
	or->branches = palloc0(sizeof(FilterAnd) * n);
	for (int i = 0; i < n; i++)
	{
		JsonbValue *e = getIthJsonbValueFromContainer(arr, i);
		int			old = where_push_index(st, i);

		if (e->type != jbvBinary || !JsonContainerIsObject(e->val.binary.data) ||
			JsonContainerSize(e->val.binary.data) == 0)
			policy_error(st, "each branch of \"$or\" is a policy: an object with at least one key");
		compile_object(st, e->val.binary.data, &or->branches[i]);
		where_pop(st, old);
	}
}

/* The keys of a (nested) policy object, added to and. */
static void
compile_object(CompileState *st, JsonbContainer *obj, FilterAnd *and)
{
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	key;
	JsonbValue	v;

	check_stack_depth();
	memset(&key, 0, sizeof(key));
	it = JsonbIteratorInit(obj);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		int			old;

		if (tok == WJB_KEY)
		{
			key = v;
			continue;
		}
		if (tok != WJB_VALUE)
			continue;
		old = where_push_key(st, key.val.string.val, key.val.string.len);
		if (key_is(&key, "$or"))
			compile_or(st, &v, and);
		else if (key.val.string.len == 0)
			policy_error(st, "a key must not be empty");
		else if (key.val.string.val[0] == '$')
			policy_error(st, "unknown operator key; the only key starting with \"$\" is \"$or\"");
		else
		{
			if (st->depth >= FILTER_MAX_DEPTH)
				policy_error(st, "keys nest more than %d deep", FILTER_MAX_DEPTH);
			st->path[st->depth].key = key.val.string.val;
			st->path[st->depth].len = key.val.string.len;
			st->depth++;
			if (v.type == jbvBinary && JsonContainerIsArray(v.val.binary.data))
				compile_leaf(st, v.val.binary.data, and);
			else if (v.type == jbvBinary && JsonContainerIsObject(v.val.binary.data))
			{
				if (!st->body_scope)
					policy_error(st, "nested keys need filter_scope => 'body'; attributes are not nested");
				if (JsonContainerSize(v.val.binary.data) == 0)
					policy_error(st, "a nested object needs at least one key");
				compile_object(st, v.val.binary.data, and);
			}
			else
				policy_error(st, "a key maps to an array of conditions%s",
							 st->body_scope ? " or to a nested object" : "");
			st->depth--;
		}
		where_pop(st, old);
	}
}

/*
 * The keys of a policy: the most any one choice of "$or" branches makes
 * match together.  The combinations: the product of the numbers of
 * conditions of the keys, with the branches of an "$or" adding up.
 */
static void
count_policy(const FilterAnd *and, double *keys, double *combinations)
{
	*keys = and->nleaves;
	*combinations = 1;
	for (int i = 0; i < and->nleaves; i++)
		*combinations *= and->leaves[i].nconds;
	for (int i = 0; i < and->nors; i++)
	{
		double		most = 0,
					sum = 0;

		for (int b = 0; b < and->ors[i].nbranches; b++)
		{
			double		k,
						c;

			count_policy(&and->ors[i].branches[b], &k, &c);
			most = Max(most, k);
			sum += c;
		}
		*keys += most;
		*combinations *= sum;
	}
}

/*
 * filter_compile
 *		Validate a filter policy and compile it, in the current memory
 *		context.  body_scope: the keys name properties of a JSON body
 *		(nested objects allowed) rather than message attributes.
 */
CourierFilter *
filter_compile(Jsonb *policy, bool body_scope)
{
	CourierFilter *filter = palloc0(sizeof(CourierFilter));
	CompileState st;
	double		keys,
				combinations;

	memset(&st, 0, sizeof(st));
	st.body_scope = body_scope;
	initStringInfo(&st.where);
	appendStringInfoChar(&st.where, '$');

	if (VARSIZE(policy) > FILTER_MAX_SIZE)
		policy_error(&st, "a policy may have at most %d bytes", FILTER_MAX_SIZE);
	if (!JB_ROOT_IS_OBJECT(policy))
		policy_error(&st, "a policy is a JSON object");
	filter->body_scope = body_scope;
	compile_object(&st, &policy->root, &filter->root);

	count_policy(&filter->root, &keys, &combinations);
	if (keys > FILTER_MAX_KEYS)
		policy_error(&st, "a policy may have at most %d keys, this one has %.0f",
					 FILTER_MAX_KEYS, keys);
	if (combinations > FILTER_MAX_COMBINATIONS)
		policy_error(&st, "a policy may have at most %d combinations of values, this one has %.0f",
					 FILTER_MAX_COMBINATIONS, combinations);
	pfree(st.where.data);
	return filter;
}

/*
 * Matching
 */

typedef struct LeafMatch
{
	const FilterLeaf *leaf;
	bool		present;		/* a non-null, non-empty value was found */
} LeafMatch;

static bool
has_prefix(const JsonbValue *v, const FilterValue *fv)
{
	return v->type == jbvString && v->val.string.len >= fv->len &&
		memcmp(v->val.string.val, fv->str, fv->len) == 0;
}

static bool
has_suffix(const JsonbValue *v, const FilterValue *fv)
{
	return v->type == jbvString && v->val.string.len >= fv->len &&
		memcmp(v->val.string.val + v->val.string.len - fv->len, fv->str, fv->len) == 0;
}

static bool
value_equals(const FilterValue *fv, const JsonbValue *v, double num)
{
	if (fv->type != v->type)
		return false;
	switch (v->type)
	{
		case jbvString:
			return fv->len == v->val.string.len &&
				memcmp(fv->str, v->val.string.val, fv->len) == 0;
		case jbvNumeric:
			return fv->num == num;
		case jbvBool:
			return fv->boolean == v->val.boolean;
		default:
			return true;		/* null */
	}
}

static bool
in_range(const FilterCond *cond, double num)
{
	if (cond->has_low && !(cond->low_inclusive ? num >= cond->low : num > cond->low))
		return false;
	if (cond->has_high && !(cond->high_inclusive ? num <= cond->high : num < cond->high))
		return false;
	return true;
}

/* Whether a scalar the leaf's path leads to meets one of its value conditions. */
static bool
match_scalar(LeafMatch *lm, const JsonbValue *v)
{
	const FilterLeaf *leaf = lm->leaf;
	double		num = 0;

	if (v->type == jbvNull)
	{
		for (int i = 0; i < leaf->nconds; i++)
			if (leaf->conds[i].op == FOP_EQUALS && leaf->conds[i].value.type == jbvNull)
				return true;
		return false;
	}
	if (v->type != jbvString || v->val.string.len > 0)
		lm->present = true;
	if (v->type == jbvNumeric && leaf->numeric)
		num = numeric_to_double(v->val.numeric);

	for (int i = 0; i < leaf->nconds; i++)
	{
		const FilterCond *cond = &leaf->conds[i];
		bool		match = false;

		switch (cond->op)
		{
			case FOP_EQUALS:
				match = value_equals(&cond->value, v, num);
				break;
			case FOP_PREFIX:
				match = has_prefix(v, &cond->value);
				break;
			case FOP_SUFFIX:
				match = has_suffix(v, &cond->value);
				break;
			case FOP_IGNORE_CASE:
				if (v->type == jbvString)
				{
					char	   *lower = str_tolower(v->val.string.val, v->val.string.len,
													DEFAULT_COLLATION_OID);

					match = strcmp(lower, cond->value.str) == 0;
					pfree(lower);
				}
				break;
			case FOP_ANYTHING_BUT:
				match = true;
				for (int k = 0; k < cond->nvalues && match; k++)
					match = !value_equals(&cond->values[k], v, num);
				break;
			case FOP_ANYTHING_BUT_PREFIX:
				match = v->type == jbvString && !has_prefix(v, &cond->value);
				break;
			case FOP_ANYTHING_BUT_SUFFIX:
				match = v->type == jbvString && !has_suffix(v, &cond->value);
				break;
			case FOP_NUMERIC:
				match = v->type == jbvNumeric && in_range(cond, num);
				break;
			case FOP_EXISTS:
				break;			/* decided once the whole path was walked */
		}
		if (match)
			return true;
	}
	return false;
}

/*
 * Follows the leaf's path from v (depth keys of it already followed),
 * looking through arrays; true as soon as a value meets a condition.
 */
static bool
walk(LeafMatch *lm, const JsonbValue *v, int depth)
{
	JsonbContainer *c;
	JsonbValue	buf;
	JsonbValue *next;

	check_stack_depth();
	if (v->type != jbvBinary)
		return depth == lm->leaf->depth && match_scalar(lm, v);
	c = v->val.binary.data;
	if (JsonContainerIsArray(c))
	{
		int			n = JsonContainerSize(c);

		for (int i = 0; i < n; i++)
		{
			JsonbValue *e = getIthJsonbValueFromContainer(c, i);
			bool		match = walk(lm, e, depth);

			pfree(e);
			if (match)
				return true;
		}
		return false;
	}
	/* an object: only a step on the way; values and "exists" concern leaves */
	if (depth == lm->leaf->depth)
		return false;
	next = getKeyJsonValueFromContainer(c, lm->leaf->path[depth].key,
										lm->leaf->path[depth].len, &buf);
	return next != NULL && walk(lm, next, depth + 1);
}

static bool
match_leaf(const FilterLeaf *leaf, JsonbContainer *root)
{
	LeafMatch	lm;
	JsonbValue	v;

	lm.leaf = leaf;
	lm.present = false;
	v.type = jbvBinary;
	v.val.binary.data = root;
	v.val.binary.len = 0;		/* unused by walk */
	if (walk(&lm, &v, 0))
		return true;
	for (int i = 0; i < leaf->nconds; i++)
		if (leaf->conds[i].op == FOP_EXISTS && leaf->conds[i].exists == lm.present)
			return true;
	return false;
}

static bool
match_and(const FilterAnd *and, JsonbContainer *root)
{
	for (int i = 0; i < and->nleaves; i++)
		if (!match_leaf(&and->leaves[i], root))
			return false;
	for (int i = 0; i < and->nors; i++)
	{
		bool		any = false;

		for (int b = 0; b < and->ors[i].nbranches && !any; b++)
			any = match_and(&and->ors[i].branches[b], root);
		if (!any)
			return false;
	}
	return true;
}

/*
 * filter_match
 *		Whether a message matches: doc is its attributes (attribute scope)
 *		or its jsonb body (body scope), NULL when it has none.
 *
 * An empty policy matches every message.  Any other policy matches no
 * message without attributes (SNS: even {"exists": false} needs at least
 * one attribute) and no body that is not JSON.
 */
bool
filter_match(const CourierFilter *filter, Jsonb *doc)
{
	bool		empty = (filter->root.nleaves == 0 && filter->root.nors == 0);

	if (empty)
		return true;
	if (doc == NULL || (!filter->body_scope && JB_ROOT_COUNT(doc) == 0))
		return false;
	return match_and(&filter->root, &doc->root);
}
