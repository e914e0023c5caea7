// What the test asks of a page that holds the README's RudderStack snippet:
// the shop's own calls, through the global the snippet sets.
const ready = () => new Promise((resolve) => window.rudderanalytics.ready(resolve));
window.cartera = {
  consent: async (choice) => { window.carteraConsent(choice); return null; },
  anonymousId: async () => { await ready(); return window.rudderanalytics.getAnonymousId(); },
  // load() sets the default instance's key, the write key; before it, calls
  // go to an instance that has none and sends nothing.
  loaded: async () => window.rudderanalytics.defaultAnalyticsKey !== '',
  // analytics-js queues its deliveries and reports none of them here.
  browse: async () => {
    await ready();
    window.rudderanalytics.page('Home');
    window.rudderanalytics.track('Product Viewed', { product_id: 'shoe-42', category: 'running', price: 89.9 });
    return [];
  },
  tryTrack: async () => { window.rudderanalytics.track('Product Viewed', { product_id: 'shoe-42' }); return null; },
  signIn: async (userId, traits) => { await ready(); window.rudderanalytics.identify(userId, traits); return null; },
  addToCart: async (props) => { await ready(); window.rudderanalytics.track('Product Added', props); return null; },
};
