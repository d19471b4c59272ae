/**
 * The sandbox's GraphQL Admin schema: Shopify's published 2025-07 schema cut down to what the sync uses
 * (`admin-2025-07.subset.graphql`), with the scalars serialised as Shopify serialises them, and the query cost
 * Shopify's calculator charges for a request.
 */
import { readFileSync } from 'node:fs';
import {
  buildSchema,
  GraphQLError,
  GraphQLScalarType,
  type GraphQLSchema,
  getNamedType,
  getNullableType,
  isLeafType,
  isListType,
  Kind,
  NoDeprecatedCustomRule,
  parse,
  specifiedRules,
  TypeInfo,
  validate,
  visit,
  visitWithTypeInfo,
  type ArgumentNode,
  type DocumentNode,
} from 'graphql';

export const ADMIN_API_VERSION = '2025-07';

const SDL_URL = new URL('./schema/admin-2025-07.subset.graphql', import.meta.url);

/** Shopify serialises these as strings (UnsignedInt64 too, as a 64-bit value does not fit a JSON number). */
const STRING_SCALARS = ['DateTime', 'Decimal', 'UnsignedInt64', 'URL'] as const;

function buildAdminSchema(): GraphQLSchema {
  const schema = buildSchema(readFileSync(SDL_URL, 'utf8'));
  for (const name of STRING_SCALARS) {
    const type = schema.getType(name);
    if (!(type instanceof GraphQLScalarType)) throw new Error(`admin schema: scalar ${name} is missing`);
    type.serialize = (value: unknown) => (value instanceof Date ? value.toISOString().replace(/\.\d{3}Z$/, 'Z') : String(value));
    type.parseValue = (value: unknown) => {
      if (typeof value !== 'string') throw new GraphQLError(`${name} must be a string`);
      return value;
    };
  }
  return schema;
}

let cached: GraphQLSchema | undefined;

/** The subset schema, built once per process. */
export function adminSchema(): GraphQLSchema {
  cached ??= buildAdminSchema();
  return cached;
}

/**
 * Parses `query` and validates it against the Admin API 2025-07 subset: a misspelt field, a field Shopify does not
 * have on that type, a wrong argument or a missing sub-selection each come back as an error (an empty list when the
 * query is valid). For tests that check the service's queries against Shopify's schema.
 */
export function validateAgainstAdminSchema(query: string): readonly GraphQLError[] {
  let document: DocumentNode;
  try {
    document = parse(query);
  } catch (err) {
    return [err instanceof GraphQLError ? err : new GraphQLError(String(err))];
  }
  return validate(adminSchema(), document, specifiedRules);
}

/**
 * The deprecated fields and enum values `query` uses in 2025-07 (e.g. `Customer.phone`, `ShopPlan.displayName`): still
 * answered, but Shopify names their replacement and may drop them in a later version. Empty when there are none.
 */
export function deprecatedUsage(query: string): readonly GraphQLError[] {
  return validate(adminSchema(), parse(query), [NoDeprecatedCustomRule]);
}

/** Shopify's default page size assumption when a connection names neither `first` nor `last`. */
const DEFAULT_PAGE = 1;

/**
 * The cost Shopify's calculator puts on an operation: 1 per object, 0 per scalar or enum, a connection costs 2 plus
 * its page size (`first`/`last`) times the cost of one of its nodes, and a mutation costs 10.
 */
export function requestedQueryCost(schema: GraphQLSchema, document: DocumentNode, variables: Record<string, unknown> = {}): number {
  const typeInfo = new TypeInfo(schema);
  // A stack of multipliers: the page sizes of the connections around the current field.
  const multipliers: number[] = [1];
  let cost = 0;
  let inMutation = false;
  visit(
    document,
    visitWithTypeInfo(typeInfo, {
      OperationDefinition: {
        enter(node) {
          inMutation = node.operation === 'mutation';
        },
      },
      Field: {
        enter(node) {
          const type = typeInfo.getType();
          const parent = typeInfo.getParentType();
          const multiplier = multipliers[multipliers.length - 1]!;
          if (type === null || type === undefined) {
            multipliers.push(multiplier);
            return;
          }
          const named = getNamedType(type);
          if (inMutation && parent === schema.getMutationType()) {
            cost += 10;
            multipliers.push(0);
            return;
          }
          if (isLeafType(named)) {
            multipliers.push(multiplier);
            return;
          }
          if (named.name.endsWith('Connection')) {
            cost += 2 * multiplier;
            multipliers.push(multiplier * pageSize(node.arguments ?? [], variables));
            return;
          }
          // Edges and node lists inside a connection are paid for by the connection's page size.
          const insideConnection = parent !== null && parent !== undefined && /(Connection|Edge)$/.test(parent.name);
          if (!insideConnection || !isListType(getNullableType(type))) cost += multiplier;
          multipliers.push(multiplier);
        },
        leave() {
          multipliers.pop();
        },
      },
    }),
  );
  return cost;
}

function pageSize(args: readonly ArgumentNode[], variables: Record<string, unknown>): number {
  for (const arg of args) {
    if (arg.name.value !== 'first' && arg.name.value !== 'last') continue;
    const value = arg.value;
    if (value.kind === Kind.INT) return Number(value.value);
    if (value.kind === Kind.VARIABLE) {
      const v = variables[value.name.value];
      if (typeof v === 'number') return v;
    }
  }
  return DEFAULT_PAGE;
}
