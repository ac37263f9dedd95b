-- spread SQL increments over 1000 amber counter objects
-- (the workerd side uses ../shared/peers/many.lua: /?name=objN)
request = function()
  return wrk.format("GET", "/counter/obj" .. math.random(1, 1000) .. "/increment")
end
