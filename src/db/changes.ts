/**
 * Word, inside this process, that a shop's row or its automations were written. The data layer says it wherever it
 * writes them; caches above it (src/automations/shopDirectory.ts) listen, so a change made here is seen here at once.
 * Other processes are not told: their caches hold a row for a bounded time instead.
 */

/** The shop whose row or automations changed, by whichever key the writer had. */
export type ShopChange = { shopId: number } | { domain: string };

const listeners = new Set<(change: ShopChange) => void>();

/** Calls `listener` on every change from now on; returns the function that stops it. */
export function onShopChange(listener: (change: ShopChange) => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function shopChanged(change: ShopChange): void {
  for (const listener of listeners) listener(change);
}
