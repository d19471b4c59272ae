/**
 * `GET/PATCH /api/settings`: the shop's time zone, quiet hours, frequency cap, sender and opt-out footer.
 *
 * They are stored where the pipeline already reads them — `shops.timezone` and `shops.settings` — so a change takes
 * effect on the next evaluation: quiet hours and cap through `pipelineRules()` (an automation's own rules still win),
 * the sender and footer when the message is rendered, the zone as the fallback when the customer's is unknown.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { DEFAULT_FREQUENCY_CAP, DEFAULT_QUIET_HOURS } from '../../automations/defaults.js';
import { shopSettings } from '../../automations/settings.js';
import { shopOwningSender } from '../../db/inbound.js';
import { updateShopSettings } from '../../db/shops.js';
import { sqlStateOf } from '../../db/client.js';
import { AppError } from '../../errors.js';
import { normalizeNumber } from '../../messages/inbound.js';
import type { Shop } from '../../db/schema.js';
import { DEFAULT_OPT_OUT_FOOTER } from '../../messages/render.js';
import { isValidTimezone } from '../../rules/quietHours.js';
import type { AppDeps } from '../app.js';
import { merchantAuth, requireShop } from '../merchantAuth.js';
import { routeSchema, useZodValidation } from './docs.js';

export const clock = z.string().regex(/^([01]\d|2[0-3]):([0-5]\d)$/, 'must be HH:mm (00:00-23:59)');
export const frequencyCapSchema = z
  .object({
    max: z.number().int().min(1).max(100),
    windowHours: z.number().positive().max(720),
  })
  .strict();
export const quietHoursSchema = z.object({ enabled: z.boolean().optional(), start: clock.optional(), end: clock.optional() }).strict();
/** Mitto's sender rules: 3-11 letters/digits, or a number of 3-14 digits. */
export const senderSchema = z.string().regex(/^([A-Za-z0-9 ]{3,11}|\+?[0-9]{3,14})$/, 'must be 3-11 letters/digits or a number of 3-14 digits');

const settingsPatch = z
  .object({
    timezone: z.string().refine(isValidTimezone, 'must be an IANA time zone such as America/New_York'),
    quietHours: quietHoursSchema,
    frequencyCap: frequencyCapSchema.nullable(),
    sender: senderSchema.nullable(),
    optOutFooter: z.string().trim().min(1).max(120).nullable(),
    name: z.string().trim().min(1).max(100).nullable(),
  })
  .partial()
  .strict()
  .refine((p) => Object.keys(p).length > 0, 'name at least one setting');

/** The settings in effect for a shop: what is stored, with the defaults filled in. */
export function effectiveSettings(shop: Shop, defaultSender: string) {
  const s = shopSettings(shop);
  return {
    shop: shop.domain,
    name: s.name ?? shop.name ?? null,
    timezone: shop.timezone,
    quietHours: { ...DEFAULT_QUIET_HOURS, ...s.quietHours },
    frequencyCap: s.frequencyCap === undefined ? { ...DEFAULT_FREQUENCY_CAP } : s.frequencyCap,
    sender: s.sender ?? defaultSender,
    optOutFooter: s.optOutFooter ?? DEFAULT_OPT_OUT_FOOTER,
  };
}

function senderTaken(sender: string, why = 'another shop sends from it') {
  return new AppError('SENDER_TAKEN', `sender: ${sender} is not available (${why})`, { details: { field: 'sender' } });
}

export async function registerSettingsRoutes(app: FastifyInstance, { deps }: { deps: AppDeps }): Promise<void> {
  useZodValidation(app);
  app.addHook('onRequest', merchantAuth(deps));
  const sender = deps.config.sms.sender;

  /**
   * A sender number belongs to one shop, so replies to it (STOP, HELP) reach that shop and no other. The platform's
   * shared sender is what a shop without one uses; it cannot be claimed. Numbers are stored in one spelling (E.164);
   * alphanumeric sender ids cannot be replied to and are not exclusive.
   */
  const claimableSender = async (requested: string, shop: Shop): Promise<string> => {
    const key = normalizeNumber(requested);
    if (!/^\+?\d+$/.test(key)) return key;
    if (key === normalizeNumber(sender)) throw senderTaken(key, "it is the platform's shared sender; set sender to null to use it");
    const owner = await shopOwningSender(deps.db.db, key);
    if (owner && owner.id !== shop.id) throw senderTaken(key);
    return key;
  };

  app.get('/api/settings', routeSchema({ operationId: 'getSettings', summary: 'The shop settings in effect (defaults filled in)', tags: ['settings'], auth: 'merchant' }), async (req) =>
    effectiveSettings(requireShop(req), sender),
  );

  app.patch(
    '/api/settings',
    routeSchema({
      operationId: 'updateSettings',
      summary: 'Change shop settings; null resets a setting to its default',
      tags: ['settings'],
      auth: 'merchant',
      body: settingsPatch,
      errors: [409],
    }),
    async (req) => {
      const shop = requireShop(req);
      const patch = req.body as z.output<typeof settingsPatch>;
      const set: Record<string, unknown> = {};
      const unset: string[] = [];
      for (const key of ['frequencyCap', 'sender', 'optOutFooter', 'name'] as const) {
        if (patch[key] === undefined) continue;
        // A null cap means "no cap", which must be stored; null for the others means "back to the default".
        if (patch[key] === null && key !== 'frequencyCap') unset.push(key);
        else set[key] = patch[key];
      }
      if (patch.quietHours) set.quietHours = { ...shopSettings(shop).quietHours, ...patch.quietHours };
      if (typeof set.sender === 'string') set.sender = await claimableSender(set.sender, shop);
      let updated: Shop | undefined;
      try {
        updated = await updateShopSettings(deps.db.db, shop.id, { timezone: patch.timezone, set, unset });
      } catch (err) {
        // Two shops claiming one number at once: the unique index lets one win.
        if (sqlStateOf(err) === '23505') throw senderTaken(String(set.sender));
        throw err;
      }
      return effectiveSettings(updated ?? shop, sender);
    },
  );
}
