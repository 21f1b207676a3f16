// The card page: Stripe.js draws the card fields and sets the card up with Stripe (3-D Secure
// included) with the SetupIntent's secret the page was given; then the form goes to the server
// with the SetupIntent's id, which keeps the card and charges it. The card's details go from
// the browser to Stripe only.
(function () {
  'use strict';
  const form = document.getElementById('card-form');
  const errorBox = document.getElementById('card-error');
  const button = document.getElementById('card-pay');
  const fail = (message) => {
    errorBox.textContent = message;
    errorBox.hidden = false;
    button.disabled = false;
  };
  if (!form) return;
  if (typeof Stripe !== 'function') {
    fail('The card form could not load. Reload the page, or pay in $IOSD instead.');
    button.disabled = true;
    return;
  }
  const stripe = Stripe(form.dataset.stripeKey);
  const card = stripe.elements().create('card');
  card.mount('#card-element');
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    button.disabled = true;
    errorBox.hidden = true;
    let result;
    try {
      result = await stripe.confirmCardSetup(form.dataset.clientSecret, { payment_method: { card } });
    } catch (e) {
      result = { error: { message: 'The card could not be set up; try again.' } };
    }
    if (result.error || !result.setupIntent) {
      fail((result.error && result.error.message) || 'The card could not be set up.');
      return;
    }
    document.getElementById('setup-intent').value = result.setupIntent.id;
    form.submit();
  });
})();
