/**
 * Bulk query results for the sandbox: the JSONL Shopify writes for a `bulkOperationRunQuery` over `customers`, one
 * line per customer, produced on the fly in batches so a result of a million lines costs one batch of memory.
 * Each batch runs the operation's own query through graphql-js, so aliases, fragments and scalar serialisation are
 * what a real execution gives.
 */
import { Readable } from 'node:stream';
import {
  type DocumentNode,
  type FieldNode,
  type FragmentDefinitionNode,
  type FragmentSpreadNode,
  getDirectiveValues,
  getNullableType,
  GraphQLIncludeDirective,
  GraphQLNonNull,
  type GraphQLObjectType,
  type GraphQLOutputType,
  type GraphQLSchema,
  GraphQLSkipDirective,
  type InlineFragmentNode,
  isLeafType,
  isListType,
  Kind,
  type OperationDefinitionNode,
  type SelectionSetNode,
} from 'graphql';
import { customerAt, type CustomerSearch, matches, parseCustomerSearch } from './customers.js';

const BATCH = 500;

/** The root connection a bulk query reads and how its nodes are reached (`edges { node }` or `nodes`). */
export interface BulkPlan {
  document: DocumentNode;
  /** Response key of the `customers` field. */
  rootKey: string;
  /** Response keys leading from the connection to a node: `[edges, node]` or `[nodes]`. */
  nodePath: string[];
  /** Which customers the connection's `query` argument selects. */
  search: CustomerSearch;
}

/**
 * Checks what Shopify checks of a bulk query beyond schema validity: one query operation whose only top-level field
 * is a connection (here: `customers`) selecting its nodes. Returns the plan, or a message for a userError.
 */
export function planBulkQuery(document: DocumentNode): BulkPlan | string {
  const operations = document.definitions.filter((d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION);
  if (operations.length !== 1 || operations[0]!.operation !== 'query') return 'Bulk queries must contain exactly one query operation.';
  const fields = operations[0]!.selectionSet.selections.filter((s): s is FieldNode => s.kind === Kind.FIELD);
  const root = fields.find((f) => f.name.value === 'customers');
  if (root === undefined || fields.length !== 1) return 'Bulk queries must contain at least one connection.';
  const queryArg = root.arguments?.find((a) => a.name.value === 'query')?.value;
  if (queryArg !== undefined && queryArg.kind !== Kind.STRING) return 'Bulk queries take no variables: give customers(query:) as a string.';
  const search = parseCustomerSearch(queryArg?.value);
  if (search === null) return `The sandbox supports only "phone:*" as a customers search query, not "${queryArg!.value}".`;
  const children = (root.selectionSet?.selections ?? []).filter((s): s is FieldNode => s.kind === Kind.FIELD);
  const edges = children.find((f) => f.name.value === 'edges');
  const node = edges?.selectionSet?.selections.find((s): s is FieldNode => s.kind === Kind.FIELD && s.name.value === 'node');
  if (edges !== undefined && node !== undefined) {
    return { document, rootKey: key(root), nodePath: [key(edges), key(node)], search };
  }
  const nodes = children.find((f) => f.name.value === 'nodes');
  if (nodes !== undefined) return { document, rootKey: key(root), nodePath: [key(nodes)], search };
  return 'Bulk queries must select the nodes of their connection (edges { node { … } } or nodes { … }).';
}

const key = (f: FieldNode) => f.alias?.value ?? f.name.value;

export interface BulkStreamOptions {
  schema: GraphQLSchema;
  plan: BulkPlan;
  /** The shop's customers: 1..total. */
  total: number;
  /** At most this many lines (a partial result); default all the search selects. */
  limit?: number;
  currencyCode: string;
  /** When set, the stream fails after this many lines (a download cut off mid-way). */
  failAfter?: number;
}

type Project = (source: Record<string, unknown>) => unknown;

/**
 * Compiles the selection a bulk query makes on each node into a function from a customer to its JSONL object.
 * It gives what graphql-js's `execute` gives for the same (validated) query (a test holds the two together) at a
 * small fraction of the cost, which matters at a million lines: aliases, `__typename`, inline fragments, fragment
 * spreads, `@skip`/`@include`, nulls, lists and scalar serialisation through the schema's own types.
 */
export function compileProjection(schema: GraphQLSchema, plan: BulkPlan): Project {
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const d of plan.document.definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments.set(d.name.value, d);
  const included = (node: FieldNode | InlineFragmentNode | FragmentSpreadNode) =>
    getDirectiveValues(GraphQLSkipDirective, node)?.if !== true && getDirectiveValues(GraphQLIncludeDirective, node)?.if !== false;

  function collect(type: GraphQLObjectType, selectionSet: SelectionSetNode, into: Map<string, FieldNode[]>): void {
    for (const sel of selectionSet.selections) {
      if (!included(sel)) continue;
      if (sel.kind === Kind.FIELD) {
        const k = sel.alias?.value ?? sel.name.value;
        into.set(k, [...(into.get(k) ?? []), sel]);
      } else {
        const fragment = sel.kind === Kind.INLINE_FRAGMENT ? sel : fragments.get(sel.name.value)!;
        const condition = fragment.typeCondition?.name.value;
        if (condition === undefined || condition === type.name || type.getInterfaces().some((i) => i.name === condition)) {
          collect(type, fragment.selectionSet, into);
        }
      }
    }
  }

  function compileType(type: GraphQLOutputType, nodes: FieldNode[]): (value: unknown) => unknown {
    const inner = getNullableType(type);
    if (isListType(inner)) {
      const item = compileType(inner.ofType, nodes);
      return (value) => (value === null || value === undefined ? null : (value as unknown[]).map(item));
    }
    if (isLeafType(inner)) return (value) => (value === null || value === undefined ? null : inner.serialize(value));
    const objectType = inner as GraphQLObjectType;
    const fields = new Map<string, FieldNode[]>();
    for (const node of nodes) if (node.selectionSet) collect(objectType, node.selectionSet, fields);
    const steps = [...fields].map(([responseKey, fieldNodes]) => {
      const name = fieldNodes[0]!.name.value;
      if (name === '__typename') return { responseKey, read: () => objectType.name };
      const def = objectType.getFields()[name]!;
      const convert = compileType(def.type, fieldNodes);
      return { responseKey, read: (source: Record<string, unknown>) => convert(source[name]) };
    });
    return (value) => {
      if (value === null || value === undefined) return null;
      const out: Record<string, unknown> = {};
      for (const step of steps) out[step.responseKey] = step.read(value as Record<string, unknown>);
      return out;
    };
  }

  const customer = schema.getType('Customer') as GraphQLObjectType;
  const node = findNodeField(plan);
  return compileType(new GraphQLNonNull(customer), [node]) as Project;
}

/** The field whose selection is made on each node: `node` under `edges`, or `nodes`. */
function findNodeField(plan: BulkPlan): FieldNode {
  const operation = plan.document.definitions.find((d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION)!;
  let selections = operation.selectionSet.selections;
  let field: FieldNode | undefined;
  for (const responseKey of [plan.rootKey, ...plan.nodePath]) {
    field = selections.find((s): s is FieldNode => s.kind === Kind.FIELD && key(s) === responseKey)!;
    selections = field.selectionSet?.selections ?? [];
  }
  return field!;
}

async function* lines(o: BulkStreamOptions): AsyncGenerator<string> {
  const project = compileProjection(o.schema, o.plan);
  const limit = o.limit ?? Infinity;
  let written = 0;
  let chunk = '';
  for (let n = 1; n <= o.total && written < limit; n++) {
    if (!matches(n, o.plan.search)) continue;
    if (o.failAfter !== undefined && written >= o.failAfter) {
      if (chunk !== '') yield chunk;
      throw new Error('bulk result download cut off (injected fault)');
    }
    chunk += `${JSON.stringify(project(customerAt(n, o.currencyCode) as unknown as Record<string, unknown>))}\n`;
    if (++written % BATCH === 0) {
      yield chunk;
      chunk = '';
    }
  }
  if (chunk !== '') yield chunk;
}

/** The JSONL result as a stream that generates each batch when the reader asks for it. */
export function bulkResultStream(o: BulkStreamOptions): Readable {
  return Readable.from(lines(o), { objectMode: false });
}
