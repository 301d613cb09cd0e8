/** `cutover preview-token`: a signed value that shows the preview colour on the live listener (router.previewAccess). */
import type { Command } from 'commander';
import type { CommandKit } from './context.ts';

interface PreviewToken { header: string; cookie: string; value: string; expiresAt: number; live: string }

export function registerPreviewToken(program: Command, kit: CommandKit): void {
  program.command('preview-token')
    .description('a signed value that shows the preview on the live listener (needs router.previewAccess.secret)')
    .option('--ttl <duration>', 'how long it is valid (up to 7d)', '1h')
    .option('--json', 'print as JSON')
    .action(async (opts: { ttl: string; json?: boolean }, cmd: Command) => {
      await kit.withClient(cmd, async (c) => {
        const t = await c.call<PreviewToken>('POST', '/preview-token', { ttl: opts.ttl });
        if (opts.json) { kit.json(t); return; }
        const out = kit.io.stdout;
        out.write(`valid until ${new Date(t.expiresAt).toISOString()}\n`);
        out.write(`  header: ${t.header}: ${t.value}\n  cookie: ${t.cookie}=${t.value}\n`);
        out.write(`  curl -H '${t.header}: ${t.value}' ${t.live}/\n`);
      });
    });
}
