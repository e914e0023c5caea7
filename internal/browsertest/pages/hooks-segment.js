// What the test asks of a page that holds the README's Segment snippet:
// the shop's own calls, through the global the snippet sets.
const outcome = (ctx) => ({
  messageId: ctx.event.messageId,
  failed: ctx.failedDelivery() ? String(ctx.failedDelivery().reason) : '',
});
window.cartera = {
  consent: async (choice) => { window.carteraConsent(choice); return null; },
  anonymousId: async () => (await window.analytics.user()).anonymousId(),
  loaded: async () => window.analytics.instance !== undefined,
  browse: async () => [
    outcome(await window.analytics.page('Home')),
    outcome(await window.analytics.track('Product Viewed', { product_id: 'shoe-42', category: 'running', price: 89.9 })),
  ],
  // Not awaited: without the SDK loaded the promise never settles.
  tryTrack: async () => { window.analytics.track('Product Viewed', { product_id: 'shoe-42' }); return null; },
  signIn: async (userId, traits) => outcome(await window.analytics.identify(userId, traits)),
  addToCart: async (props) => outcome(await window.analytics.track('Product Added', props)),
};
