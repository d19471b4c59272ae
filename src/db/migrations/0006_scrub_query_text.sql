-- 0006: failed-query text recorded before errors were made safe to keep.
--
-- A failed query's message read "Failed query: <sql> params: <values>", and the values were a customer's phone, e-mail
-- and names. Dead letters (message and stack) and events (error) kept it, and customer erasure did not reach it. Since
-- this version only the SQLSTATE and the names of table, column and constraint are recorded; rows written earlier lose
-- the text here. Data only: no table changes.

UPDATE dead_letters
SET error_message = 'database query failed (its text, which quoted the query parameters, was removed)',
    stack = NULL
WHERE error_message LIKE '%Failed query:%' OR stack LIKE '%Failed query:%';

UPDATE events
SET error = 'database query failed (its text, which quoted the query parameters, was removed)'
WHERE error LIKE '%Failed query:%';
