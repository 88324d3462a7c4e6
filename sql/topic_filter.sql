--
-- topic_filter: SNS filter policies: every operator, the examples of the SNS
-- documentation (attribute and body scope), $or, nesting, limits, and
-- malformed policies refused at subscribe time with the path of the bad part
--
\set VERBOSITY terse
\set SHOW_CONTEXT never

SELECT courier.create_topic('ft');
SELECT courier.create_queue('fq');

-- Whether a message with these attributes and this body (text_body: a text body
-- instead) reaches a subscription with this policy: subscribe, publish, count
-- what arrived, then undo it all.
CREATE FUNCTION pg_temp.matches(policy jsonb, attrs jsonb, scope text DEFAULT 'attributes',
                                body jsonb DEFAULT '{}', text_body text DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
  n bigint;
BEGIN
  BEGIN
    PERFORM courier.subscribe('ft', 'fq', policy, filter_scope => scope);
    IF text_body IS NULL THEN
      PERFORM courier.publish('ft', body, attrs);
    ELSE
      PERFORM courier.publish('ft', text_body, attrs);
    END IF;
    SELECT count(*) INTO n FROM courier.receive('fq', 10);
    RAISE EXCEPTION 'undo';
  EXCEPTION WHEN raise_exception THEN
    NULL;
  END;
  RETURN n = 1;
END $$;

--
-- attribute scope: SNS documentation examples, then edge cases.  Each row
-- shows the expected result and the one measured.
--
SELECT label, expect, pg_temp.matches(policy::jsonb, attrs::jsonb) AS got
  FROM (VALUES
    -- exact string matching
    ('exact: rugby',            true,  '{"customer_interests": ["rugby", "tennis"]}', '{"customer_interests": "rugby"}'),
    ('exact: tennis',           true,  '{"customer_interests": ["rugby", "tennis"]}', '{"customer_interests": "tennis"}'),
    ('exact: baseball',         false, '{"customer_interests": ["rugby", "tennis"]}', '{"customer_interests": "baseball"}'),
    ('exact: case matters',     false, '{"customer_interests": ["rugby", "tennis"]}', '{"customer_interests": "Rugby"}'),
    ('exact: key missing',      false, '{"customer_interests": ["rugby", "tennis"]}', '{"store": "rugby"}'),
    ('exact: number not string',false, '{"customer_interests": ["100"]}',             '{"customer_interests": 100}'),
    -- anything-but
    ('anything-but: baseball',  true,  '{"customer_interests": [{"anything-but": ["rugby", "tennis"]}]}', '{"customer_interests": "baseball"}'),
    ('anything-but: football',  true,  '{"customer_interests": [{"anything-but": ["rugby", "tennis"]}]}', '{"customer_interests": "football"}'),
    ('anything-but: rugby',     false, '{"customer_interests": [{"anything-but": ["rugby", "tennis"]}]}', '{"customer_interests": "rugby"}'),
    ('anything-but: missing',   false, '{"customer_interests": [{"anything-but": ["rugby", "tennis"]}]}', '{"store": "x"}'),
    ('anything-but or exists false: missing', true, '{"customer_interests": [{"anything-but": ["rugby"]}, {"exists": false}]}', '{"store": "x"}'),
    ('anything-but or exists false: rugby', false, '{"customer_interests": [{"anything-but": ["rugby"]}, {"exists": false}]}', '{"customer_interests": "rugby"}'),
    ('anything-but one value',  false, '{"customer_interests": [{"anything-but": "rugby"}]}', '{"customer_interests": "rugby"}'),
    ('anything-but: a number',  true,  '{"customer_interests": [{"anything-but": "rugby"}]}', '{"customer_interests": 5}'),
    ('anything-but prefix: football',   true,  '{"customer_interests": [{"anything-but": {"prefix": "bas"}}]}', '{"customer_interests": "football"}'),
    ('anything-but prefix: baseball',   false, '{"customer_interests": [{"anything-but": {"prefix": "bas"}}]}', '{"customer_interests": "baseball"}'),
    ('anything-but prefix: basketball', false, '{"customer_interests": [{"anything-but": {"prefix": "bas"}}]}', '{"customer_interests": "basketball"}'),
    ('anything-but suffix: rugby',      true,  '{"customer_interests": [{"anything-but": {"suffix": "ball"}}]}', '{"customer_interests": "rugby"}'),
    ('anything-but suffix: baseball',   false, '{"customer_interests": [{"anything-but": {"suffix": "ball"}}]}', '{"customer_interests": "baseball"}'),
    ('anything-but numbers: 101',   true,  '{"price": [{"anything-but": [100, 500]}]}', '{"price": 101}'),
    ('anything-but numbers: 100.1', true,  '{"price": [{"anything-but": [100, 500]}]}', '{"price": 100.1}'),
    ('anything-but numbers: 100',   false, '{"price": [{"anything-but": [100, 500]}]}', '{"price": 100}'),
    ('anything-but numbers: 5e2',   false, '{"price": [{"anything-but": [100, 500]}]}', '{"price": 5e2}'),
    -- prefix, suffix, equals-ignore-case
    ('prefix: baseball',        true,  '{"customer_interests": [{"prefix": "bas"}]}', '{"customer_interests": "baseball"}'),
    ('prefix: basketball',      true,  '{"customer_interests": [{"prefix": "bas"}]}', '{"customer_interests": "basketball"}'),
    ('prefix: rugby',           false, '{"customer_interests": [{"prefix": "bas"}]}', '{"customer_interests": "rugby"}'),
    ('prefix: shorter value',   false, '{"customer_interests": [{"prefix": "bas"}]}', '{"customer_interests": "ba"}'),
    ('prefix: not a string',    false, '{"code": [{"prefix": "1"}]}',                 '{"code": 123}'),
    ('suffix: baseball',        true,  '{"customer_interests": [{"suffix": "ball"}]}', '{"customer_interests": "baseball"}'),
    ('suffix: basketball',      true,  '{"customer_interests": [{"suffix": "ball"}]}', '{"customer_interests": "basketball"}'),
    ('suffix: rugby',           false, '{"customer_interests": [{"suffix": "ball"}]}', '{"customer_interests": "rugby"}'),
    ('ignore-case: TENNIS',     true,  '{"customer_interests": [{"equals-ignore-case": "tennis"}]}', '{"customer_interests": "TENNIS"}'),
    ('ignore-case: Tennis',     true,  '{"customer_interests": [{"equals-ignore-case": "tennis"}]}', '{"customer_interests": "Tennis"}'),
    ('ignore-case: policy upper', true, '{"customer_interests": [{"equals-ignore-case": "TeNNis"}]}', '{"customer_interests": "tennis"}'),
    ('ignore-case: tennis club', false, '{"customer_interests": [{"equals-ignore-case": "tennis"}]}', '{"customer_interests": "tennis club"}'),
    -- numbers
    ('numeric =: 301.5',        true,  '{"price_usd": [{"numeric": ["=", 301.5]}]}', '{"price_usd": 301.5}'),
    ('numeric =: 3.015e2',      true,  '{"price_usd": [{"numeric": ["=", 301.5]}]}', '{"price_usd": 3.015e2}'),
    ('numeric =: 301',          false, '{"price_usd": [{"numeric": ["=", 301.5]}]}', '{"price_usd": 301}'),
    ('numeric =: a string',     false, '{"price_usd": [{"numeric": ["=", 301.5]}]}', '{"price_usd": "301.5"}'),
    ('numeric <: -1',           true,  '{"price_usd": [{"numeric": ["<", 0]}]}',      '{"price_usd": -1}'),
    ('numeric <: 0',            false, '{"price_usd": [{"numeric": ["<", 0]}]}',      '{"price_usd": 0}'),
    ('numeric <=: 0',           true,  '{"price_usd": [{"numeric": ["<=", 0]}]}',     '{"price_usd": 0}'),
    ('numeric >=: 10',          true,  '{"price_usd": [{"numeric": [">=", 10]}]}',    '{"price_usd": 10}'),
    ('numeric >: 10',           false, '{"price_usd": [{"numeric": [">", 10]}]}',     '{"price_usd": 10}'),
    ('range (0,150]: 0',        false, '{"price_usd": [{"numeric": [">", 0, "<=", 150]}]}', '{"price_usd": 0}'),
    ('range (0,150]: 0.01',     true,  '{"price_usd": [{"numeric": [">", 0, "<=", 150]}]}', '{"price_usd": 0.01}'),
    ('range (0,150]: 150',      true,  '{"price_usd": [{"numeric": [">", 0, "<=", 150]}]}', '{"price_usd": 150}'),
    ('range (0,150]: 150.01',   false, '{"price_usd": [{"numeric": [">", 0, "<=", 150]}]}', '{"price_usd": 150.01}'),
    ('range [0,150): 0',        true,  '{"price_usd": [{"numeric": [">=", 0, "<", 150]}]}', '{"price_usd": 0}'),
    ('range [0,150): 150',      false, '{"price_usd": [{"numeric": [">=", 0, "<", 150]}]}', '{"price_usd": 150}'),
    ('exact number: 100.0',     true,  '{"price_usd": [100]}',   '{"price_usd": 100.0}'),
    ('exact number: string',    false, '{"price_usd": [100]}',   '{"price_usd": "100"}'),
    ('boolean: true',           true,  '{"urgent": [true]}',     '{"urgent": true}'),
    ('boolean: false',          false, '{"urgent": [true]}',     '{"urgent": false}'),
    ('boolean: string',         false, '{"urgent": [true]}',     '{"urgent": "true"}'),
    -- exists
    ('exists true: present',    true,  '{"store": [{"exists": true}]}',  '{"store": "fans", "customer_interests": "baseball"}'),
    ('exists true: absent',     false, '{"store": [{"exists": true}]}',  '{"customer_interests": "baseball"}'),
    ('exists true: empty string', false, '{"store": [{"exists": true}]}', '{"store": ""}'),
    ('exists false: absent',    true,  '{"store": [{"exists": false}]}', '{"customer_interests": "baseball"}'),
    ('exists false: present',   false, '{"store": [{"exists": false}]}', '{"store": "fans", "customer_interests": "baseball"}'),
    ('exists false: no attributes', false, '{"store": [{"exists": false}]}', NULL),
    ('exists false: empty attributes', false, '{"store": [{"exists": false}]}', '{}'),
    -- AND across keys, OR within a key, $or
    ('and: both',               true,  '{"customer_interests": ["rugby"], "price_usd": [{"numeric": [">", 100]}]}', '{"customer_interests": "rugby", "price_usd": 101}'),
    ('and: one fails',          false, '{"customer_interests": ["rugby"], "price_usd": [{"numeric": [">", 100]}]}', '{"customer_interests": "rugby", "price_usd": 100}'),
    ('and: one missing',        false, '{"customer_interests": ["rugby"], "price_usd": [{"numeric": [">", 100]}]}', '{"customer_interests": "rugby"}'),
    ('or list: football',       true,  '{"customer_interests": ["rugby", "football", "baseball"]}', '{"customer_interests": "football"}'),
    ('mixed list: prefix',      true,  '{"color": ["red", {"prefix": "bl"}, {"numeric": ["=", 7]}]}', '{"color": "blue"}'),
    ('mixed list: number',      true,  '{"color": ["red", {"prefix": "bl"}, {"numeric": ["=", 7]}]}', '{"color": 7}'),
    ('mixed list: none',        false, '{"color": ["red", {"prefix": "bl"}, {"numeric": ["=", 7]}]}', '{"color": "green"}'),
    ('$or: metricName',         true,  '{"source": ["aws.cloudwatch"], "$or": [{"metricName": ["CPUUtilization"]}, {"namespace": ["AWS/EC2"]}]}', '{"source": "aws.cloudwatch", "metricName": "CPUUtilization"}'),
    ('$or: namespace',          true,  '{"source": ["aws.cloudwatch"], "$or": [{"metricName": ["CPUUtilization"]}, {"namespace": ["AWS/EC2"]}]}', '{"source": "aws.cloudwatch", "namespace": "AWS/EC2"}'),
    ('$or: neither branch',     false, '{"source": ["aws.cloudwatch"], "$or": [{"metricName": ["CPUUtilization"]}, {"namespace": ["AWS/EC2"]}]}', '{"source": "aws.cloudwatch", "namespace": "AWS/RDS"}'),
    ('$or: AND part fails',     false, '{"source": ["aws.cloudwatch"], "$or": [{"metricName": ["CPUUtilization"]}, {"namespace": ["AWS/EC2"]}]}', '{"source": "aws.ec2", "metricName": "CPUUtilization"}'),
    ('$or nested in $or',       true,  '{"$or": [{"a": ["1"]}, {"$or": [{"b": ["2"]}, {"c": ["3"]}]}]}', '{"c": "3"}'),
    ('empty policy: no attributes', true, '{}', NULL)
  ) AS t(label, expect, policy, attrs);

--
-- body scope: the same operators on JSON bodies, nested keys, arrays
--
SELECT label, expect, pg_temp.matches(policy::jsonb, NULL, 'body', body::jsonb) AS got
  FROM (VALUES
    ('exact: rugby',            true,  '{"customer_interests": ["rugby", "tennis"]}', '{"customer_interests": "rugby"}'),
    ('exact: baseball',         false, '{"customer_interests": ["rugby", "tennis"]}', '{"customer_interests": "baseball"}'),
    ('exact: an array element', true,  '{"customer_interests": ["rugby", "tennis"]}', '{"customer_interests": ["baseball", "tennis"]}'),
    ('anything-but: [rugby, baseball]', true, '{"customer_interests": [{"anything-but": ["rugby", "tennis"]}]}', '{"customer_interests": ["rugby", "baseball"]}'),
    ('anything-but: [rugby]',   false, '{"customer_interests": [{"anything-but": ["rugby", "tennis"]}]}', '{"customer_interests": ["rugby"]}'),
    ('anything-but numbers: [100, 50]', true, '{"price": [{"anything-but": [100, 500]}]}', '{"price": [100, 50]}'),
    ('anything-but numbers: 100', false, '{"price": [{"anything-but": [100, 500]}]}', '{"price": 100}'),
    ('numeric =: 3.015e2',      true,  '{"price_usd": [{"numeric": ["=", 301.5]}]}', '{"price_usd": 3.015e2}'),
    ('exists true: present',    true,  '{"store": [{"exists": true}]}', '{"store": "fans", "customer_interests": ["baseball", "basketball"]}'),
    ('exists true: absent',     false, '{"store": [{"exists": true}]}', '{"customer_interests": ["baseball", "basketball"]}'),
    ('exists true: null',       false, '{"store": [{"exists": true}]}', '{"store": null}'),
    ('exists true: an object',  false, '{"store": [{"exists": true}]}', '{"store": {"name": "fans"}}'),
    ('exists false: absent',    true,  '{"store": [{"exists": false}]}', '{"customer_interests": ["baseball", "basketball"]}'),
    ('exists false: present',   false, '{"store": [{"exists": false}]}', '{"store": "fans"}'),
    ('null: null',              true,  '{"store": [null]}', '{"store": null}'),
    ('null: absent',            false, '{"store": [null]}', '{"other": 1}'),
    ('nested: gold',            true,  '{"order": {"customer": {"tier": ["gold"]}}}', '{"order": {"customer": {"tier": "gold"}}}'),
    ('nested: silver',          false, '{"order": {"customer": {"tier": ["gold"]}}}', '{"order": {"customer": {"tier": "silver"}}}'),
    ('nested: through an array', true, '{"order": {"customer": {"tier": ["gold"]}}}', '{"order": {"customer": [{"tier": "silver"}, {"tier": "gold"}]}}'),
    ('nested: top level only',  false, '{"order": {"customer": {"tier": ["gold"]}}}', '{"tier": "gold"}'),
    ('nested: object at leaf',  false, '{"order": {"customer": ["gold"]}}',           '{"order": {"customer": {"tier": "gold"}}}'),
    ('nested and: both',        true,  '{"order": {"total": [{"numeric": [">", 100]}], "currency": ["EUR"]}}', '{"order": {"total": 150, "currency": "EUR"}}'),
    ('nested and: one',         false, '{"order": {"total": [{"numeric": [">", 100]}], "currency": ["EUR"]}}', '{"order": {"total": 150, "currency": "USD"}}'),
    ('nested $or: vip',         true,  '{"order": {"$or": [{"total": [{"numeric": [">", 1000]}]}, {"vip": [true]}]}}', '{"order": {"total": 5, "vip": true}}'),
    ('nested $or: neither',     false, '{"order": {"$or": [{"total": [{"numeric": [">", 1000]}]}, {"vip": [true]}]}}', '{"order": {"total": 5, "vip": false}}'),
    ('root array of objects',   true,  '{"kind": ["a"]}', '[{"kind": "b"}, {"kind": "a"}]'),
    ('scalar body',             false, '{"kind": ["a"]}', '"a"'),
    ('attributes are not the body', false, '{"kind": ["a"]}', '{"other": 1}')
  ) AS t(label, expect, policy, body);

-- a body-scope policy never matches a text body, even one that looks like JSON;
-- an empty policy matches everything
SELECT pg_temp.matches('{"kind": ["a"]}', NULL, 'body', text_body => '{"kind": "a"}') AS text_body,
       pg_temp.matches('{"kind": [{"exists": false}]}', NULL, 'body', text_body => 'plain')
         AS text_body_exists_false,
       pg_temp.matches('{}', NULL, 'body', text_body => 'plain') AS empty_policy;

-- limits: 5 keys (counted along the largest $or branch), 150 combinations
SELECT pg_temp.matches('{"a": ["1"], "b": ["1"], "c": ["1"], "d": ["1"], "e": ["1"]}',
                       '{"a": "1", "b": "1", "c": "1", "d": "1", "e": "1"}') AS five_keys;
SELECT pg_temp.matches(jsonb_build_object('a', (SELECT jsonb_agg(g::text) FROM generate_series(1, 10) g),
                                          'b', (SELECT jsonb_agg(g::text) FROM generate_series(1, 15) g)),
                       '{"a": "10", "b": "15"}') AS combinations_150;

--
-- malformed policies: refused by subscribe with 22023 and where the problem is
--
SELECT courier.subscribe('ft', 'fq', '[]');
SELECT courier.subscribe('ft', 'fq', '"rugby"');
SELECT courier.subscribe('ft', 'fq', '{"a": "rugby"}');
SELECT courier.subscribe('ft', 'fq', '{"a": []}');
SELECT courier.subscribe('ft', 'fq', '{"a": [["x"]]}');
SELECT courier.subscribe('ft', 'fq', '{"a": [{}]}');
SELECT courier.subscribe('ft', 'fq', '{"a": [{"prefix": "x", "suffix": "y"}]}');
SELECT courier.subscribe('ft', 'fq', '{"a": [{"wildcard": "x*"}]}');
SELECT courier.subscribe('ft', 'fq', '{"a": [{"prefix": 1}]}');
SELECT courier.subscribe('ft', 'fq', '{"a": ["x", {"suffix": ["ball"]}]}');
SELECT courier.subscribe('ft', 'fq', '{"a": [{"equals-ignore-case": null}]}');
SELECT courier.subscribe('ft', 'fq', '{"a": [{"exists": "yes"}]}');
SELECT courier.subscribe('ft', 'fq', '{"a": [{"anything-but": []}]}');
SELECT courier.subscribe('ft', 'fq', '{"a": [{"anything-but": [true]}]}');
SELECT courier.subscribe('ft', 'fq', '{"a": [{"anything-but": {"exists": true}}]}');
SELECT courier.subscribe('ft', 'fq', '{"a": [{"anything-but": {"prefix": 5}}]}');
SELECT courier.subscribe('ft', 'fq', '{"a": [{"numeric": 5}]}');
SELECT courier.subscribe('ft', 'fq', '{"a": [{"numeric": [">", 1, "<"]}]}');
SELECT courier.subscribe('ft', 'fq', '{"a": [{"numeric": ["=>", 1]}]}');
SELECT courier.subscribe('ft', 'fq', '{"a": [{"numeric": [">", "1"]}]}');
SELECT courier.subscribe('ft', 'fq', '{"a": [{"numeric": ["<", 1, ">", 0]}]}');
SELECT courier.subscribe('ft', 'fq', '{"a": [{"numeric": [">", 0, ">", 1]}]}');
SELECT courier.subscribe('ft', 'fq', '{"a": [{"numeric": [">", 5, "<", 1]}]}');
SELECT courier.subscribe('ft', 'fq', '{"a": [{"numeric": [">", 1e10]}]}');
SELECT courier.subscribe('ft', 'fq', '{"a": [1e10]}');
SELECT courier.subscribe('ft', 'fq', '{"": ["x"]}');
SELECT courier.subscribe('ft', 'fq', '{"$and": [{"a": ["x"]}, {"b": ["y"]}]}');
SELECT courier.subscribe('ft', 'fq', '{"$or": [{"a": ["x"]}]}');
SELECT courier.subscribe('ft', 'fq', '{"$or": {"a": ["x"]}}');
SELECT courier.subscribe('ft', 'fq', '{"$or": [{"a": ["x"]}, {}]}');
SELECT courier.subscribe('ft', 'fq', '{"$or": [{"a": ["x"]}, {"b": "y"}]}');
SELECT courier.subscribe('ft', 'fq', '{"order": {"total": [1]}}');
SELECT courier.subscribe('ft', 'fq', '{"order": {}}', filter_scope => 'body');
SELECT courier.subscribe('ft', 'fq', '{"order": {"lines": {"sku": [{"numeric": [">", "x"]}]}}}', filter_scope => 'body');
SELECT courier.subscribe('ft', 'fq', '{"my key": {"x": ["1"]}}');
SELECT courier.subscribe('ft', 'fq', '{"a": ["1"], "b": ["1"], "c": ["1"], "d": ["1"], "e": ["1"], "f": ["1"]}');
SELECT courier.subscribe('ft', 'fq', '{"a": ["1"], "b": ["1"], "c": ["1"], "$or": [{"d": ["1"], "e": ["1"], "f": ["1"]}, {"g": ["1"]}]}');
SELECT courier.subscribe('ft', 'fq', jsonb_build_object(
  'a', (SELECT jsonb_agg(g::text) FROM generate_series(1, 10) g),
  'b', (SELECT jsonb_agg(g::text) FROM generate_series(1, 16) g)));
SELECT courier.subscribe('ft', 'fq', '{"a": ["1"]}', filter_scope => 'payload');
SELECT courier.subscribe('ft', 'fq', '{"a": ["1"]}', filter_scope => NULL);
SELECT courier.subscribe('ft', 'fq', '{"a": ["1"]}', raw => NULL);

-- nothing was subscribed by any of them
SELECT count(*) AS subscriptions FROM courier.subscriptions;

SELECT courier.drop_topic('ft');
SELECT courier.drop_queue('fq');
