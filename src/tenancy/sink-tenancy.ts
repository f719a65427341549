import type { FlotillaRecord } from '../core/record.js';
import type { TenancyConfig, TenancyStrategy } from '../sinks/shared/config.js';
import { RowRefusedError } from '../sinks/shared/errors.js';
import type { Row } from '../sinks/shared/rows.js';
import { InvalidTenantError, namespaceOf, TenantResolver } from './tenant.js';

/**
 * What a database sink needs of its `tenancy:` option: each record's tenant (validated) and the
 * namespace it goes to. Every refusal is a RowRefusedError, raised before any statement, so a
 * record with a missing or malicious tenant is dead-lettered and nothing is created for it.
 */
export class SinkTenancy {
  readonly strategy: TenancyStrategy;
  /** row: the column or field holding the tenant. */
  readonly column: string;
  private readonly resolver: TenantResolver;
  private readonly prefix: string;

  constructor(config: TenancyConfig) {
    this.strategy = config.strategy;
    this.column = config.column;
    this.prefix = config.prefix;
    this.resolver = new TenantResolver(config.field);
  }

  tenantOf(record: FlotillaRecord): string {
    return refused(() => this.resolver.tenantOf(record));
  }

  /** The record's tenant namespace (`prefix + tenant`): a schema, a database or a key prefix. */
  namespaceOf(record: FlotillaRecord): string {
    const tenant = this.tenantOf(record);
    return refused(() => namespaceOf(this.prefix, tenant));
  }

  /**
   * Where a record's statements go: its tenant for `row` (one transaction per tenant where the
   * database sets it), its namespace for `schema` and `database`.
   */
  targetOf(record: FlotillaRecord): string {
    return this.strategy === 'row' ? this.tenantOf(record) : this.namespaceOf(record);
  }

  /**
   * The row a record writes where tenants share a table or key space: its tenant (as sent, valid
   * or not: an invalid one is refused later) and its id, so one id in two tenants is two rows.
   */
  rowKey(record: FlotillaRecord): string {
    return `${JSON.stringify(this.resolver.field.read(record.value) ?? null)}\u0000${record.id}`;
  }

  /**
   * row: refuses a row whose own tenant column disagrees with the record's tenant (a mapped
   * column or a value field of that name), so the sink never writes one tenant's data as another's.
   */
  checkRow(row: Row, tenant: string): void {
    const own = row[this.column];
    if (own !== undefined && own !== null && own !== tenant) {
      throw new RowRefusedError(
        `column '${this.column}' is ${JSON.stringify(own)} but the record's tenant is '${tenant}' (from field '${this.resolver.field.text}')`,
      );
    }
  }
}

function refused<T>(read: () => T): T {
  try {
    return read();
  } catch (err) {
    if (err instanceof InvalidTenantError) throw new RowRefusedError(err.message, { cause: err });
    throw err;
  }
}
